"""The cluster engine on a real local Ray instance (2 CPUs): detect and eval give what a local run
gives, a worker killed by SIGKILL and a driver killed mid-run lose and duplicate nothing, bad
images are per-file errors, and URLs are read through fsspec (HTTP on 127.0.0.1)."""

import functools
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from singleshot.app.cli import app

ray = pytest.importorskip("ray")  # an extra of `all`: CI installs it, so this never skips there


def run(*args):
    res = CliRunner().invoke(app, [str(a) for a in args])
    return res.exit_code, res.stdout, res.stderr


@pytest.fixture(scope="module")
def cluster():
    """A real local Ray instance; the engine joins it (``ray.is_initialized``), and other
    processes join it by its address."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """40 synthetic scenes with COCO annotations, and a corrupt file beside them."""
    from singleshot.data.synth import write_dataset

    root = tmp_path_factory.mktemp("cluster-data")
    write_dataset(root, 40, seed=11, workers=1)
    (root / "images" / "zz_corrupt.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return root


def detect_doc(*args):
    code, out, err = run("detect", *args, "--json")
    assert code in (0, 1), err
    return code, json.loads(out), err


def test_detect_on_ray_equals_local(cluster, dataset):
    images = dataset / "images"
    code_l, local, _ = detect_doc(images)
    code_r, remote, err = detect_doc(images, "--engine", "ray", "--workers", "2", "--batch", "1")
    assert code_l == code_r == 1  # the corrupt file is an error entry, not a crashed job
    assert remote == local
    bad = [e for e in remote["images"] if e["error"]]
    assert [Path(e["path"]).name for e in bad] == ["zz_corrupt.jpg"]
    assert "cannot" in bad[0]["error"] or "not an image" in bad[0]["error"]
    assert "cluster: 2 worker(s) x 1 CPU(s), start" in err and "images/s" in err
    assert sum(len(e["detections"]) for e in local["images"]) > 40


def test_eval_on_ray_equals_local(cluster, dataset, tmp_path):
    common = ["eval", "--model", "demo", "--images", dataset / "images", "--annotations",
              dataset / "annotations.json", "--json"]
    code, out_local, err = run(*common, "-o", tmp_path / "local")
    assert code == 0, err
    code, out_ray, err = run(*common, "-o", tmp_path / "ray", "--engine", "ray", "--workers", "2")
    assert code == 0, err
    assert json.loads(out_ray) == json.loads(out_local)  # summary and per-class AP

    def results(folder):
        res = json.loads((folder / "demo" / "results.json").read_text())
        return sorted(json.dumps(r, sort_keys=True) for r in res)

    assert results(tmp_path / "ray") == results(tmp_path / "local")
    assert len(results(tmp_path / "local")) > 40


def test_worker_killed_mid_run_every_image_once(cluster, dataset, tmp_path):
    """SIGKILL a worker's process once results flow: its batches are redone, nothing twice."""
    from singleshot.cluster.engine import RayOptions
    from singleshot.cluster.jobs import detect_on_ray
    from singleshot.io.sources import expand_sources
    from singleshot.runtime.detector import Detector
    from singleshot.runtime.report import ResultStore

    paths, _ = expand_sources([str(dataset / "images")])
    det = Detector("demo", conf=0.25)
    store = ResultStore(tmp_path / "out", det)
    todo = store.open(paths)
    opts = RayOptions(workers=2, cpus_per_worker=1)
    killed, after_kill = None, []
    with store.recorder() as record:
        for r in detect_on_ray(det, todo, opts, image_kwargs={}):
            record(r.to_dict())
            if killed is None:
                killed = r.pid
                os.kill(killed, signal.SIGKILL)
            else:
                after_kill.append(r.pid)
    assert after_kill, "the run ended before the kill could matter"
    totals = store.assemble(paths)
    assert totals.images == len(paths) and totals.failed == 1
    lines = (tmp_path / "out" / "detections.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["path"] for line in lines) == sorted(paths)  # exactly once
    doc = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert [e["path"] for e in doc["images"]] == paths


def serve_folder(folder, get_delay_s=0.0, threaded=True):
    """Serve ``folder`` over HTTP on 127.0.0.1 (each GET taking ``get_delay_s`` more)."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            time.sleep(get_delay_s)
            super().do_GET()

        def log_message(self, *args):
            pass

    cls = http.server.ThreadingHTTPServer if threaded else http.server.HTTPServer
    server = cls(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def http_images(dataset):
    """The dataset's images served over HTTP on 127.0.0.1."""
    server, url = serve_folder(dataset / "images")
    yield url
    server.shutdown()


def test_driver_killed_and_rerun_resumes(cluster, dataset, tmp_path):
    """A driver killed mid-run (SIGKILL) and run again with the same --out finishes, redoing
    at most the batches that were in flight; every input is in the journal once and the
    detections equal a local run's. The images come from a slow server (one GET at a time,
    0.1 s each) so that the kill lands mid-run."""
    server, url = serve_folder(dataset / "images", get_delay_s=0.1, threaded=False)
    names = sorted(p.name for p in (dataset / "images").iterdir())
    urls = [f"{url}/{n}" for n in names]
    out = tmp_path / "out"
    args = ["detect", *urls, "--engine", "ray", "--address", cluster, "--workers", "1",
            "--cpus-per-worker", "1", "-o", str(out)]
    proc = subprocess.Popen([sys.executable, "-m", "singleshot", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    journal = out / "detections.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if journal.exists() and len(journal.read_text().splitlines()) >= 8:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = len([line for line in journal.read_text().splitlines() if line.endswith("}")])
    assert 8 <= before < len(urls)
    code, _, err = run(*args)
    server.shutdown()
    assert code == 1, err  # the corrupt file
    done_before = int(err.split("resuming: ")[1].split(" of ")[0])
    assert done_before >= before - 1 and f"of {len(urls)} input(s)" in err
    paths = [json.loads(line)["path"] for line in journal.read_text().splitlines() if line.strip()]
    assert len(paths) == len(set(paths)) == len(urls)
    doc = json.loads((out / "detections.json").read_text())
    assert [e["path"] for e in doc["images"]] == urls
    _, local, _ = detect_doc(*[dataset / "images" / n for n in names])
    assert [e["detections"] for e in doc["images"]] == [e["detections"] for e in local["images"]]


def test_urls_through_fsspec_http(cluster, dataset, http_images, tmp_path):
    names = sorted(p.name for p in (dataset / "images").iterdir())[:5] + ["missing.jpg"]
    urls = [f"{http_images}/{n}" for n in names]
    code, remote, err = detect_doc(*urls, "--engine", "ray", "-o", tmp_path / "out")
    assert code == 1
    _, local, _ = detect_doc(*[dataset / "images" / n for n in names[:5]])
    assert [e["detections"] for e in remote["images"][:5]] == \
        [e["detections"] for e in local["images"]]
    assert "missing.jpg" in remote["images"][5]["error"]
    # the same URLs run locally give the same document; a rerun finds everything done
    code, local_urls, _ = detect_doc(*urls)
    assert [e["detections"] for e in local_urls["images"]] == \
        [e["detections"] for e in remote["images"]]
    code, _, err = run("detect", *urls, "--engine", "ray", "-o", tmp_path / "out")
    assert "resuming: 5 of 6" in err  # the missing URL has no version: it is tried again
