"""Downloads into the cache (``$SINGLESHOT_HOME``, default ``~/.cache/singleshot``): resume with
HTTP Range, size and sha256 check, atomic rename, progress bar on stderr."""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import DownloadError
from ..progress import Progress, resolve
from .registry import RegistryEntry, bundled_path

CHUNK = 1 << 20


def cache_dir() -> Path:
    return Path(os.environ.get("SINGLESHOT_HOME", Path.home() / ".cache" / "singleshot"))


def model_path(entry: RegistryEntry) -> Path:
    if entry.bundled:
        return bundled_path(entry.filename)
    return cache_dir() / "models" / entry.filename


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def download(url: str, dest: Path, *, sha256: str | None = None, size: int | None = None,
             progress: Progress | None = None, timeout: float = 60.0) -> Path:
    """Fetch ``url`` to ``dest``. Partial data lives in ``dest.part`` and is resumed with a Range
    request; the file appears at ``dest`` only after size and sha256 match (atomic rename).
    A mismatch deletes the partial file and raises DownloadError."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have > size:
        part.unlink()
        have = 0
    served = None  # the file size the server declares (Content-Length / Content-Range)
    headers = {"User-Agent": "singleshot"}
    if have and (size is None or have < size):
        headers["Range"] = f"bytes={have}-"
    try:
        if size is None or have < size:
            req = urllib.request.Request(url, headers=headers)
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                if have and resp.status != 206:  # server ignored the Range: start over
                    have = 0
                length = resp.headers.get("Content-Length")
                total = (have + int(length)) if length is not None else size
                if length is not None:
                    served = total
                _stream(resp, part, have, total, dest.name, resolve(progress))
    except urllib.error.HTTPError as err:
        if err.code == 416 and size is not None and have == size:
            pass  # already complete
        elif err.code == 416:  # the server's file ends before what we hold: not the one we want
            part.unlink(missing_ok=True)
            raise DownloadError(f"{url}: the server's file is shorter than the {have} bytes "
                                f"already fetched (expected {size}); the partial file was "
                                "deleted") from None
        else:
            raise DownloadError(f"{url}: HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        reason = getattr(err, "reason", err)
        raise DownloadError(f"{url}: download failed ({reason}); run again to resume") from None
    got = part.stat().st_size
    if size is not None and served is not None and served != size:
        # The server's file is another size (a wrong mirror): resuming would never fix it.
        part.unlink()
        raise DownloadError(f"{url}: the server's file is {served} bytes, expected {size}: not "
                            "the published file; the partial file was deleted")
    if size is not None and got != size:
        if got > size:
            part.unlink()
        raise DownloadError(f"{url}: got {got} bytes, expected {size}"
                            + ("; run again to resume" if got < size else
                               "; the partial file was deleted"))
    if sha256 is not None:
        digest = sha256_file(part)
        if digest != sha256:
            part.unlink()
            raise DownloadError(f"{url}: sha256 mismatch (got {digest}, expected {sha256}); "
                                "the partial file was deleted")
    os.replace(part, dest)
    return dest


def _stream(resp, part: Path, have: int, total: int | None, label: str,
            progress: Progress) -> None:
    mode = "ab" if have else "wb"
    progress.start(label, total, unit="B")
    try:
        if have:
            progress.advance(have)
        with open(part, mode) as f:
            for block in iter(lambda: resp.read(CHUNK), b""):
                f.write(block)
                progress.advance(len(block))
    finally:
        progress.done()


def ensure_model(entry: RegistryEntry, *, progress: Progress | None = None, force: bool = False) -> Path:
    """The local file of ``entry``, downloaded (and verified) when missing."""
    path = model_path(entry)
    if entry.bundled:
        if not path.is_file():
            raise DownloadError(f"bundled model {entry.name} is missing from the installation")
        return path
    if path.is_file() and not force:
        return path
    if entry.url is None:
        raise DownloadError(f"model {entry.name} has no download address")
    return download(entry.url, path, sha256=entry.sha256, size=entry.size, progress=progress)


def catalog() -> list[dict]:
    """The ``models --json`` records: every known model with its file, address, sha256, size,
    opset, card mAP and how it was measured, description, and its local path when cached."""
    from .registry import list_entries

    return [{"name": e.name, "file": e.filename, "url": e.url, "sha256": e.sha256,
             "size": e.size, "opset": e.opset, "card_map": e.card_map,
             "card_metric": e.card_metric, "description": e.description,
             "local": str(model_path(e)) if model_path(e).is_file() else None}
            for e in list_entries()]


# Published sizes and sha256 of the "with sample test data" archives (from the zoo repository's
# LFS pointers). Where none is known, the first download's sha256 is recorded in the cache
# (archives.json) and later downloads must match it.
ARCHIVES = {"ssd-12.tar.gz": (90_592_544,
                              "43e57501da34abe0c01ea30902303bdb14f590f59c18fbb15ea3473810b0e86b")}


def ensure_test_data(entry: RegistryEntry, *, progress: Progress | None = None,
                     force: bool = False) -> Path:
    """The zoo's archive of ``entry`` (model + ``test_data_set_*``) downloaded next to the
    ``.onnx`` file in the cache, verified and extracted safely into ``models/<name>/``.
    Returns that folder."""
    import json
    import shutil

    from .archive import safe_extract

    if entry.url is None:
        raise DownloadError(f"model {entry.name} has no download address")
    name = Path(entry.filename).stem + ".tar.gz"
    url = entry.url.rsplit("/", 1)[0] + "/" + name
    folder = cache_dir() / "models" / Path(entry.filename).stem
    if folder.is_dir() and not force:
        return folder
    archive = cache_dir() / "models" / name
    record = cache_dir() / "archives.json"
    try:
        recorded = json.loads(record.read_text())
    except (OSError, ValueError):
        recorded = {}
    size, sha = ARCHIVES.get(name, (None, recorded.get(name)))
    if force or not archive.is_file():
        download(url, archive, sha256=sha, size=size, progress=progress)
    elif sha is not None and sha256_file(archive) != sha:
        archive.unlink()
        raise DownloadError(f"{archive}: sha256 differs from the one recorded; deleted, run "
                            "again to download it anew")
    if sha is None:  # trust on first use: later downloads are checked against this
        recorded[name] = sha256_file(archive)
        from ..io.files import write_json_atomic

        write_json_atomic(record, recorded)
    if folder.exists():
        shutil.rmtree(folder)
    return safe_extract(archive, folder)
