"""An input's bytes - a local path, or any fsspec URL (http(s)://, s3://, gs://...) - and the
version that says whether it changed since a run recorded it."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ImageError


def is_url(source: str) -> bool:
    """A URL for fsspec (``scheme://...``); anything else is a local path."""
    return "://" in str(source) and not str(source).startswith("file://")


def check_url_schemes(sources) -> None:
    """UsageError, before any work, naming the package a URL scheme needs (``s3://`` without
    s3fs, ``gs://`` without gcsfs...) or a scheme fsspec does not know."""
    import fsspec

    from ..errors import UsageError

    for scheme in dict.fromkeys(str(s).split("://", 1)[0] for s in sources if is_url(s)):
        try:
            fsspec.get_filesystem_class(scheme)
        except ImportError as err:
            raise UsageError(f"{scheme}:// sources need a package fsspec names: "
                             f"{str(err).splitlines()[0]}") from None
        except ValueError:
            raise UsageError(f"{scheme}:// is not a protocol fsspec knows") from None


def _local(source: str | os.PathLike) -> Path:
    s = str(source)
    return Path(s.removeprefix("file://"))


def read_source(source: str | os.PathLike) -> bytes:
    """The bytes of a local file or an fsspec URL; ImageError (one line naming the input) for a
    missing, empty or unreadable one."""
    name = str(source)
    if is_url(name):
        import fsspec

        try:
            with fsspec.open(name, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise ImageError(f"{name}: no such file") from None
        except Exception as err:  # noqa: BLE001 - any transport error is this input's failure
            raise ImageError(f"{name}: cannot read ({type(err).__name__}: "
                             f"{str(err).splitlines()[0] if str(err) else ''})") from None
    else:
        path = _local(name)
        if not path.exists():
            raise ImageError(f"{name}: no such file")
        if path.is_dir():
            raise ImageError(f"{name}: is a folder with no image files")
        try:
            data = path.read_bytes()
        except OSError as err:
            raise ImageError(f"{name}: cannot read ({err.strerror or err})") from None
    if not data:
        raise ImageError(f"{name}: empty file (0 bytes)")
    return data


def source_version(source: str) -> dict:
    """What identifies this version of an input: ``{"size", "mtime"}`` for a local file,
    ``{"size", "etag"}`` (or Last-Modified) for a URL; ``{}`` where it cannot be had (a missing
    file: it is tried again next time). A changed input has another version and is redone."""
    if is_url(source):
        import fsspec

        try:
            fs, path = fsspec.core.url_to_fs(source)
            info = fs.info(path)
        except Exception:  # noqa: BLE001 - unreachable now: no version, so it is retried
            return {}
        tag = info.get("ETag") or info.get("etag") or info.get("Last-Modified") or \
            info.get("mtime") or info.get("LastModified")
        return {"size": info.get("size"), "etag": str(tag) if tag is not None else None}
    try:
        st = _local(source).stat()
    except OSError:
        return {}
    return {"size": st.st_size, "mtime": st.st_mtime_ns}
