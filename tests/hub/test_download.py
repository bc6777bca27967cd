"""Downloads against a real HTTP server on 127.0.0.1: success, resume, checksum mismatch, CLI."""

import hashlib
import json
import http.server
import threading

import pytest
from typer.testing import CliRunner

from singleshot.app.cli import app
from singleshot.errors import DownloadError
from singleshot.hub.download import download, ensure_model
from singleshot.hub.registry import RegistryEntry, get_entry, register


class _Server:
    """Serves ``files`` with Range support; ``cut_after`` bytes drops the connection once."""

    def __init__(self, files):
        self.files, self.cut_after, self.requests = files, None, []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.requests.append((self.path, self.headers.get("Range")))
                data = outer.files.get(self.path.rsplit("/", 1)[-1])
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                rng = self.headers.get("Range")
                if rng:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(data):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if outer.cut_after is not None:
                    self.wfile.write(body[: outer.cut_after])
                    outer.cut_after = None
                    self.wfile.flush()
                    self.connection.shutdown(2)
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/models/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def payload():
    return bytes(range(256)) * 4096  # 1 MiB


@pytest.fixture
def server(payload):
    s = _Server({"tiny.onnx": payload})
    yield s
    s.close()


def test_download_and_checksum(server, payload, tmp_path):
    sha = hashlib.sha256(payload).hexdigest()
    dest = tmp_path / "out" / "tiny.onnx"
    assert download(server.url + "tiny.onnx", dest, sha256=sha, size=len(payload)) == dest
    assert dest.read_bytes() == payload
    assert not dest.with_name("tiny.onnx.part").exists()


def test_checksum_mismatch_deletes_partial(server, payload, tmp_path):
    dest = tmp_path / "tiny.onnx"
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        download(server.url + "tiny.onnx", dest, sha256="0" * 64, size=len(payload))
    assert not dest.exists() and not dest.with_name("tiny.onnx.part").exists()


def test_resume_after_interruption(server, payload, tmp_path):
    sha = hashlib.sha256(payload).hexdigest()
    dest = tmp_path / "tiny.onnx"
    server.cut_after = 300_000
    with pytest.raises(DownloadError):
        download(server.url + "tiny.onnx", dest, sha256=sha, size=len(payload))
    part = dest.with_name("tiny.onnx.part")
    have = part.stat().st_size
    assert 0 < have < len(payload) and not dest.exists()
    download(server.url + "tiny.onnx", dest, sha256=sha, size=len(payload))
    assert dest.read_bytes() == payload
    assert server.requests[-1][1] == f"bytes={have}-"  # only the rest was fetched


def test_missing_file_is_a_clear_error(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(server.url + "nope.onnx", tmp_path / "nope.onnx")


def test_cli_download_uses_mirror_and_cache(server, payload, monkeypatch, tmp_path):
    monkeypatch.setenv("SINGLESHOT_MODELS_URL", server.url)
    register(RegistryEntry("tiny-test", "tiny.onnx", hashlib.sha256(payload).hexdigest(),
                           len(payload), 13, None, "-", "test model"))
    runner = CliRunner()
    res = runner.invoke(app, ["download", "tiny-test"])
    assert res.exit_code == 0, res.output
    cached = tmp_path / "home" / "models" / "tiny.onnx"
    assert cached.read_bytes() == payload and str(cached) in res.output
    n = len(server.requests)
    assert ensure_model(get_entry("tiny-test")) == cached and len(server.requests) == n


def test_cli_download_zoo_name_checksum_mismatch(server, monkeypatch):
    """ssd-12 from a mirror serving the wrong bytes: refused, nothing left in the cache."""
    monkeypatch.setenv("SINGLESHOT_MODELS_URL", server.url)
    server.files["ssd-12.onnx"] = b"x" * 80366315
    res = CliRunner().invoke(app, ["download", "ssd-12"])
    assert res.exit_code == 1
    assert "sha256 mismatch" in res.output and "Traceback" not in res.output


def test_detect_downloads_missing_model(server, monkeypatch, tiny_zoo_onnx, photo, tmp_path):
    data = tiny_zoo_onnx.read_bytes()
    server.files["tiny-zoo.onnx"] = data
    monkeypatch.setenv("SINGLESHOT_MODELS_URL", server.url)
    register(RegistryEntry("tiny-zoo", "tiny-zoo.onnx", hashlib.sha256(data).hexdigest(), len(data),
                           13, None, "-", "test model"))
    res = CliRunner().invoke(app, ["detect", str(photo), "--model", "tiny-zoo", "--json"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "home" / "models" / "tiny-zoo.onnx").read_bytes() == data


def test_mirror_file_of_the_wrong_size_is_deleted(server, payload, tmp_path):
    """A mirror serving a shorter file: not 'run again to resume' forever - the partial file is
    deleted and the error says why; a rerun with a .part already past the server's end too."""
    server.files["short.onnx"] = payload[: len(payload) // 2]
    dest = tmp_path / "short.onnx"
    part = dest.with_name("short.onnx.part")
    with pytest.raises(DownloadError, match="not the published file") as err:
        download(server.url + "short.onnx", dest, size=len(payload))
    assert "resume" not in str(err.value) and not part.exists() and not dest.exists()
    part.write_bytes(payload[: len(payload) * 3 // 4])  # left by an earlier run
    with pytest.raises(DownloadError, match="partial file was deleted"):
        download(server.url + "short.onnx", dest, size=len(payload))
    assert not part.exists()


def test_download_with_test_data_then_verify(server, monkeypatch, tiny_zoo_onnx, tmp_path):
    """--with-test-data fetches the archive beside the .onnx, extracts it safely into the cache
    and `verify` passes on it; with no published hash the first download's sha256 is recorded
    and a later, different archive is refused."""
    import io
    import shutil
    import tarfile

    from singleshot.eval.verify import write_test_data

    def pack(model_bytes, n_sets, seed):
        src = tmp_path / f"src{seed}" / "tiny-td"
        src.mkdir(parents=True)
        (src / "model.onnx").write_bytes(model_bytes)
        write_test_data(src / "model.onnx", n_sets, seed=seed)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            tar.add(src, arcname="tiny-td")
        shutil.rmtree(src.parent)
        return buf.getvalue()

    data = tiny_zoo_onnx.read_bytes()
    server.files["tiny-td.onnx"] = data
    server.files["tiny-td.tar.gz"] = pack(data, 2, 0)
    monkeypatch.setenv("SINGLESHOT_MODELS_URL", server.url)
    register(RegistryEntry("tiny-td", "tiny-td.onnx", hashlib.sha256(data).hexdigest(),
                           len(data), 13, None, "-", "test model"))
    res = CliRunner().invoke(app, ["download", "tiny-td", "--with-test-data"])
    assert res.exit_code == 0, res.output
    folder = tmp_path / "home" / "models" / "tiny-td"
    assert str(folder) in res.stdout and (folder / "tiny-td" / "test_data_set_1").is_dir()
    res = CliRunner().invoke(app, ["verify", str(folder)])
    assert res.exit_code == 0 and "test_data_set_1: pass" in res.stdout, res.output
    recorded = json.loads((tmp_path / "home" / "archives.json").read_text())
    assert recorded["tiny-td.tar.gz"] == hashlib.sha256(server.files["tiny-td.tar.gz"]).hexdigest()
    server.files["tiny-td.tar.gz"] = pack(data, 1, 5)  # the mirror now serves another archive
    res = CliRunner().invoke(app, ["download", "tiny-td", "--with-test-data", "--force"])
    assert res.exit_code == 1 and "sha256 mismatch" in res.stderr
