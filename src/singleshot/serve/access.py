"""Who may use the server and from where: API keys, the Host header (DNS rebinding), browsers'
cross-site requests, and the security headers of the answers. One place, used by the HTTP
middleware (and, for the keys, by gRPC).

A page on another origin can make a browser send a POST to a server on loopback ("simple"
requests: no preflight, the answer unread - but the state changed). Browsers always send an
``Origin`` header with such a POST, and a simple request's body is text/plain, form-encoded or
multipart: the state-changing routes refuse a foreign Origin and those content types. A rebound
DNS name reaches a loopback server with the attacker's name in ``Host``: other names are refused.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import UsageError

ENV_KEYS = "SINGLESHOT_API_KEY"  # one key, or several separated by commas
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARDS = ("0.0.0.0", "::", "")
# what a browser may send across sites without asking first (the CORS "simple" types)
SIMPLE_TYPES = ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data")

# every answer: no MIME sniffing; the page: its own scripts, styles and images only (blob: for
# the pictures it draws, mediastream: for the webcam), never inside another site's frame
HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; "
                               "media-src 'self' blob: mediastream:; connect-src 'self'; "
                               "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
                               "form-action 'none'",
    "X-Frame-Options": "DENY",
}


def read_keys(api_key: str | None = None, key_file: str | os.PathLike | None = None,
              env: dict | None = None) -> list[str] | None:
    """The accepted API keys: ``--api-key``, each non-empty line of ``--api-key-file`` (keys
    off the command line, so ``ps`` does not show them), and ``SINGLESHOT_API_KEY`` (commas
    between several). Several keys: a rotation (the old and the new both accepted). None: no
    key required."""
    keys = [api_key] if api_key else []
    if key_file is not None:
        try:
            text = Path(key_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise UsageError(f"{{opt:api_key_file}} {key_file}: cannot be read "
                             f"({getattr(err, 'strerror', None) or err})") from None
        found = [line.strip() for line in text.splitlines()
                 if line.strip() and not line.lstrip().startswith("#")]
        if not found:
            raise UsageError(f"{{opt:api_key_file}} {key_file}: holds no key (one a line)")
        keys += found
    value = (os.environ if env is None else env).get(ENV_KEYS, "")
    keys += [k.strip() for k in value.split(",") if k.strip()]
    return list(dict.fromkeys(keys)) or None


def key_matches(header: str | None, keys: str | Iterable[str]) -> bool:
    """``Authorization: Bearer KEY`` - the scheme in any case (RFC 7235), the key compared in
    constant time with each accepted key."""
    scheme, _, given = (header or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    given_b = given.strip().encode()
    found = False
    for key in [keys] if isinstance(keys, str) else keys:
        found |= hmac.compare_digest(given_b, key.encode())
    return found


def allowed_hosts(bind: str, extra: list[str] | None) -> set[str] | None:
    """Host names the server answers to: ``extra`` (``--allowed-hosts``; ``*``: any), else the
    loopback names and the bind address; a wildcard bind with no list answers any name (the
    user asked for the network)."""
    if extra:
        names = {h.strip().lower().strip("[]") for h in extra if h.strip()}
        return None if "*" in names else names
    if bind in WILDCARDS:
        return None
    return {*LOOPBACK_NAMES, bind.lower().strip("[]")}


def host_of(header: str) -> str:
    """The name part of a Host header (``[::1]:8000`` -> ``::1``)."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def cross_site(method: str, path: str, headers, cors: list[str] | None) -> str | None:
    """Why a state-changing request is refused as cross-site (None: it is not)."""
    changes = (path.startswith("/v2/repository/models/") and path.endswith(("/load", "/unload"))
               ) or path == "/v2/logging" or path.endswith("/trace/setting")
    if method != "POST" or not changes:
        return None
    origin = headers.get("origin")
    if origin is not None and origin not in (cors or ()):
        own = urlsplit(origin)
        if origin == "null" or own.netloc.lower() != headers.get("host", "").lower():
            return (f"a request from origin {origin!r} may not change the server's state "
                    "(allow it with serve --cors)")
    ctype = headers.get("content-type", "").split(";")[0].strip().lower()
    sized = headers.get("content-length", "0") not in ("", "0") or \
        "transfer-encoding" in headers
    if ctype in SIMPLE_TYPES and sized:  # curl -d sends form-encoded: say what to send
        return (f"send the body as application/json, not {ctype} (curl: -H 'Content-Type: "
                "application/json')")
    return None
