"""HTTP content codings of request and response bodies: ``Content-Encoding: gzip|deflate``
requests (what tritonclient's ``request_compression_algorithm`` sends) and
``Accept-Encoding`` responses (its ``response_compression_algorithm``). zlib from the standard
library; the inflated size is bounded as it is produced, so a small bomb cannot take the memory.
"""

from __future__ import annotations

import zlib

CHUNK = 1 << 20
MIN_SIZE = 1024  # smaller responses go uncompressed: the header costs more than it saves


class CodingError(ValueError):
    """A body that does not inflate (400), or inflates past the limit (``too_large``: 413)."""

    def __init__(self, message: str, too_large: bool = False) -> None:
        super().__init__(message)
        self.too_large = too_large


def inflate(body: bytes, encoding: str, limit: int) -> bytes:
    """``body`` decoded from ``encoding`` (gzip, or deflate: zlib-wrapped, as RFC 9110 means
    it, or raw as some clients send), at most ``limit`` bytes."""
    if encoding == "gzip":
        attempts = [16 + zlib.MAX_WBITS]
    elif encoding == "deflate":
        attempts = [zlib.MAX_WBITS, -zlib.MAX_WBITS]
    else:
        raise CodingError(f"Content-Encoding {encoding!r} is not supported (gzip, deflate)")
    for k, wbits in enumerate(attempts):
        d = zlib.decompressobj(wbits)
        out, size = [], 0
        try:
            data = body
            while data:
                chunk = d.decompress(data, CHUNK)
                size += len(chunk)
                if size > limit:
                    raise CodingError("the inflated body is over the limit of LIMIT",
                                      too_large=True)
                out.append(chunk)
                data = d.unconsumed_tail
            if not d.eof:
                raise zlib.error("the compressed body is cut short")
        except zlib.error as err:
            if k + 1 < len(attempts):
                continue
            raise CodingError(f"the body is not valid {encoding} data ({err})") from None
        return b"".join(out)
    raise AssertionError("unreachable")


def compress(payload: bytes, headers: dict[str, str], accept: str | None
             ) -> tuple[bytes, dict[str, str]]:
    """``payload`` coded with the first of gzip / deflate that ``accept`` (an Accept-Encoding
    header) allows, with ``Content-Encoding`` added; unchanged when neither is asked for or the
    payload is small."""
    if not accept or len(payload) < MIN_SIZE:
        return payload, headers
    asked = {}
    for part in accept.lower().split(","):
        token, _, q = part.strip().partition(";")
        try:
            weight = float(q.split("=", 1)[1]) if "=" in q else 1.0
        except ValueError:
            weight = 0.0
        asked[token.strip()] = weight
    for coding in sorted(("gzip", "deflate"), key=lambda c: -asked.get(c, 0.0)):
        if asked.get(coding, 0.0) > 0:
            if coding == "gzip":
                c = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
                data = c.compress(payload) + c.flush()
            else:
                data = zlib.compress(payload, 6)
            return data, {**headers, "Content-Encoding": coding}
    return payload, headers
