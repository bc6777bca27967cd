"""Safe extraction of model archives (the zoo's "with sample test data" .tar.gz files).

Python's tarfile ``"data"`` filter refuses absolute paths, ``..``, links that point outside and
device files; on top of it, members over ``max_member_mb`` or an archive over ``max_total_mb``
are refused before anything is written, and extraction goes into a temporary folder renamed into
place, so an interrupted or refused extraction leaves nothing half-written.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from ..errors import DownloadError

MAX_MEMBER_MB = 1024.0
MAX_TOTAL_MB = 4096.0


def safe_extract(archive: str | os.PathLike, dest: str | os.PathLike, *,
                 max_member_mb: float = MAX_MEMBER_MB,
                 max_total_mb: float = MAX_TOTAL_MB) -> Path:
    """Extract ``archive`` into the folder ``dest`` (created; it must not exist yet) and return
    it. DownloadError with one line for a refused member, a bomb or a damaged archive."""
    archive, dest = Path(archive), Path(dest)
    if dest.exists():
        raise DownloadError(f"{dest}: already exists; remove it to extract again")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()  # reads the whole index: a cut archive fails here
            total = 0
            for m in members:
                if m.name.startswith(("/", "\\")) or (len(m.name) > 1 and m.name[1] == ":"):
                    # the "data" filter would strip the slash and extract it inside: refuse
                    raise DownloadError(f"{archive}: refused member {m.name!r} (an absolute path)")
                if m.size > max_member_mb * 1024 * 1024:
                    raise DownloadError(f"{archive}: member {m.name} is {m.size} bytes, over the "
                                        f"limit of {max_member_mb:g} MB")
                total += m.size
            if total > max_total_mb * 1024 * 1024:
                raise DownloadError(f"{archive}: {total} bytes in all, over the limit of "
                                    f"{max_total_mb:g} MB")
            for m in members:
                try:
                    tar.extract(m, tmp, filter="data")
                except tarfile.FilterError as err:
                    raise DownloadError(f"{archive}: refused member {m.name!r} ({err})") from None
        os.replace(tmp, dest)
        return dest
    except (tarfile.TarError, EOFError, OSError) as err:
        raise DownloadError(f"{archive}: damaged or truncated archive "
                            f"({type(err).__name__}: {err})") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
