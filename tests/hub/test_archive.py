"""Safe extraction: path traversal, absolute paths, links out and oversized members are refused
with one line and nothing is written outside a temporary folder; a truncated archive is
reported."""

import io
import tarfile

import pytest

from singleshot.errors import DownloadError
from singleshot.hub.archive import safe_extract


def _tar(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for name, data, kind in members:
            info = tarfile.TarInfo(name)
            if kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, data
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def test_a_good_archive_extracts(tmp_path):
    arc = _tar(tmp_path / "ok.tar.gz", [("m/model.onnx", b"x" * 10, "file"),
                                       ("m/test_data_set_0/input_0.pb", b"y", "file")])
    out = safe_extract(arc, tmp_path / "dest")
    assert (out / "m" / "model.onnx").read_bytes() == b"x" * 10
    with pytest.raises(DownloadError, match="already exists"):
        safe_extract(arc, tmp_path / "dest")


@pytest.mark.parametrize("members, message", [
    ([("ok.txt", b"1", "file"), ("../evil.txt", b"x", "file")], "refused member"),
    ([("/tmp/absolute-evil.txt", b"x", "file")], "refused member"),
    ([("link", "../../outside", "symlink")], "refused member"),
    ([("big.bin", b"z" * 3000, "file")], "over the limit"),
])
def test_unsafe_archives_are_refused(tmp_path, members, message):
    work = tmp_path / "work"
    work.mkdir()
    arc = _tar(tmp_path / "bad.tar.gz", members)
    before = set(p.name for p in tmp_path.iterdir())
    with pytest.raises(DownloadError, match=message) as err:
        safe_extract(arc, work / "dest", max_member_mb=2000 / 1024 / 1024)
    assert "\n" not in str(err.value)
    assert not (work / "dest").exists() and list(work.iterdir()) == []  # no half-written folder
    assert set(p.name for p in tmp_path.iterdir()) == before  # nothing beside it either
    assert not (tmp_path.parent / "evil.txt").exists()


def test_a_truncated_archive_is_reported(tmp_path):
    arc = _tar(tmp_path / "ok.tar.gz", [("m/model.onnx", bytes(range(256)) * 400, "file")])
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(arc.read_bytes()[: len(arc.read_bytes()) // 2])
    with pytest.raises(DownloadError, match="damaged or truncated"):
        safe_extract(cut, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".dest")] == []
