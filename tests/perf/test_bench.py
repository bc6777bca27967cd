"""`singleshot bench`: the --json schema, every model x backend side by side, LoadGen runs."""

import io
import json

import pytest
from PIL import Image
from typer.testing import CliRunner

from singleshot.app.cli import app

STAGES = {"decode", "preprocess", "inference", "postprocess"}


def _bench(*args):
    res = CliRunner().invoke(app, ["bench", *args])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_bench_json_schema(tmp_path):
    doc = _bench("demo", "demo-int8-qdq", "--backend", "onnxruntime,openvino,auto",
                 "--iterations", "3", "--warmup", "1", "--json", "--out", str(tmp_path / "b"))
    rows = doc["results"]
    assert [(r["model"], r["backend"]) for r in rows] == [
        ("demo", "onnxruntime"), ("demo", "openvino"), ("demo", "openvino"),
        ("demo-int8-qdq", "onnxruntime"), ("demo-int8-qdq", "openvino"),
        ("demo-int8-qdq", "openvino")]
    for r in rows:
        assert isinstance(r["model"], str) and isinstance(r["backend"], str)
        assert r["precision"] in ("fp32", "bf16", "int8")
        assert set(r["latency_ms"]) == {"p50", "p90", "p99"}
        assert 0 < r["latency_ms"]["p50"] <= r["latency_ms"]["p90"] <= r["latency_ms"]["p99"]
        assert isinstance(r["throughput_ips"], float) and r["throughput_ips"] > 0
        assert set(r["stages_ms"]) == STAGES and all(v >= 0 for v in r["stages_ms"].values())
        # inference + postprocess alone: within the end-to-end latency
        assert 0 < r["compute_ms"]["p50"] <= r["compute_ms"]["p90"] <= r["compute_ms"]["p99"]
        assert r["compute_ms"]["p50"] < r["latency_ms"]["p50"]
    assert rows[2]["preprocess"] == "fast" and rows[0]["preprocess"] == "card"  # auto: fast path
    assert rows[3]["precision"] == "int8" and rows[0]["precision"] == "fp32"
    for f in ("results.json", "results.md", "plot.png"):
        assert (tmp_path / "b" / f).stat().st_size > 0
    # the CPU and what it offers, in the JSON and the table
    from singleshot.runtime.cpu import cpu_info

    assert doc["cpu"]["int8"] in ("avx2", "avx-vnni", "avx512-vnni", "amx", "none")
    assert doc["cpu"] == json.loads(json.dumps(cpu_info())) and isinstance(doc["cpu"]["bf16"], bool)
    md = (tmp_path / "b" / "results.md").read_text()
    assert md.startswith(f"CPU: {doc['cpu']['model']}") and "int8 dot product" in md
    # a note wherever int8 was no faster than fp32 on a backend, and only there
    for backend in ("onnxruntime", "openvino"):
        ms = {r["precision"]: r["stages_ms"]["inference"] for r in rows if r["backend"] == backend
              and r["preprocess"] == "card"}
        noted = any(n.startswith(f"int8 is no faster than fp32 on {backend}") for n in doc["notes"])
        assert noted == (ms["int8"] >= min(v for k, v in ms.items() if k != "int8")) or backend == "openvino"


def test_bench_on_a_folder_and_bad_input(tmp_path):
    from singleshot.perf.bench import sample_image

    (tmp_path / "imgs").mkdir()
    for i in range(2):
        (tmp_path / "imgs" / f"{i}.jpg").write_bytes(sample_image(seed=i))
    doc = _bench("demo", "--backend", "onnxruntime", "--images", str(tmp_path / "imgs"),
                 "--iterations", "2", "--warmup", "0", "--no-throughput", "--json")
    assert doc["results"][0]["images"] == 2
    # a broken file and a dangling link are skipped and reported; the rest is timed and written
    (tmp_path / "imgs" / "2.jpg").write_bytes(b"broken")
    (tmp_path / "imgs" / "3.jpg").symlink_to(tmp_path / "gone.jpg")
    res = CliRunner().invoke(app, ["bench", "demo", "--backend", "onnxruntime", "--images",
                                   str(tmp_path / "imgs"), "--iterations", "1", "--warmup", "0",
                                   "--no-throughput", "-o", str(tmp_path / "b")])
    assert res.exit_code == 1 and "2.jpg" in res.stderr and "3.jpg" in res.stderr
    assert "Traceback" not in res.stderr
    doc = json.loads((tmp_path / "b" / "results.json").read_text())
    assert doc["results"][0]["images"] == 2 and len(doc["skipped_images"]) == 2
    assert doc["results"][0]["throughput_ips"] is None  # --no-throughput: not measured
    for args in (["--backend", "tpu"], ["--backend", "onnxruntime,foo"]):
        res = CliRunner().invoke(app, ["bench", "demo", *args])
        assert res.exit_code == 2 and "unknown backend" in res.stderr
    # a missing model or a non-detector: exit 2 before anything is timed, as detect and info
    (tmp_path / "notes.onnx").write_text("not a model")
    for model in ("missing.onnx", str(tmp_path / "notes.onnx")):
        res = CliRunner().invoke(app, ["bench", "demo", model, "--backend", "onnxruntime"])
        assert res.exit_code == 2 and "p50" not in res.stdout + res.stderr


@pytest.mark.parametrize("scenario", ["singlestream", "multistream", "offline", "server"])
def test_loadgen_scenarios(tiny_zoo_onnx, tmp_path, scenario):
    doc = _bench(str(tiny_zoo_onnx), "--backend", "onnxruntime", "--iterations", "2",
                 "--warmup", "1", "--no-throughput", "--scenario", scenario, "--duration", "0.5",
                 "--json", "--out", str(tmp_path))
    lg = doc["results"][0]["loadgen"]
    assert lg["scenario"] == scenario
    assert lg["Scenario"].replace(" ", "").lower() == scenario
    assert lg["Mode"] == "PerformanceOnly"
    key = {"singlestream": "Mean latency (ns)", "offline": "Samples per second",
           "server": "Completed samples per second",
           "multistream": "99.0th percentile latency (ns)"}[scenario]
    assert lg[key] > 0
    assert (tmp_path / f"loadgen-tiny_zoo-onnxruntime-{scenario}" / "mlperf_log_summary.txt").is_file()


def test_generated_bench_image_is_a_photo_like_jpeg():
    from singleshot.perf.bench import sample_image

    img = Image.open(io.BytesIO(sample_image()))
    assert img.format == "JPEG" and img.size == (640, 480)


def test_bench_batch_sizes(tiny_model, tmp_path):
    """--batch 1,2,4: images/s per batch size side by side (one backend call per batch); a
    batch-1 graph asked for more is refused before any timing, naming its real batch."""
    from singleshot.export.exporter import export_onnx

    model = tmp_path / "batched.onnx"
    export_onnx(tiny_model, model, opset=13, batch="dynamic", check=False)
    doc = _bench(str(model), "--backend", "onnxruntime", "--iterations", "2", "--warmup", "1",
                 "--no-throughput", "--batch", "1,2,4", "--json")
    rows = doc["batches"]
    assert [r["batch"] for r in rows] == [1, 2, 4]
    for r in rows:
        assert r["images_per_s"] > 0 and r["batch_ms"]["p50"] > 0 and r["backend"] == "onnxruntime"
    assert "results" in doc and len(doc["results"]) == 1
    res = CliRunner().invoke(app, ["bench", str(model), "demo", "--batch", "1,4"])
    assert res.exit_code == 2 and "demo takes batch 1" in res.stderr and "p50" not in res.output
    res = CliRunner().invoke(app, ["bench", "demo", "--batch", "four"])
    assert res.exit_code == 2 and "--batch" in res.stderr
    assert "batches" not in _bench("demo", "--backend", "onnxruntime", "--iterations", "1",
                                   "--no-throughput", "--json")


def test_int8_note_compares_like_with_like():
    from singleshot.perf.bench import int8_notes

    cpu = {"int8": "avx2", "bf16": False, "model": "x", "cores": 2}

    def row(model, precision, preprocess, ms):
        return {"model": model, "backend": "openvino", "precision": precision,
                "preprocess": preprocess, "stages_ms": {"inference": ms}}

    # int8 16.2 ms vs bf16 19.2 ms with the same preprocessing: faster, no note - although a
    # float row with other preprocessing is faster still
    rows = [row("m.onnx", "bf16", "card", 19.2), row("m.onnx", "bf16", "fast", 15.0),
            row("q.onnx", "int8", "card", 16.2)]
    assert int8_notes(rows, cpu) == []
    rows.append(row("q.onnx", "int8", "fast", 15.5))
    (note,) = int8_notes(rows, cpu)
    assert "--preprocess fast" in note and note.count("q.onnx") == 1 and "bf16" in note


def test_server_load_counts_only_answered_requests():
    import http.server
    import threading

    from singleshot.perf.loadtest import load_test

    class Failing(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Failing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        res = load_test(f"http://127.0.0.1:{server.server_address[1]}", [b"x"], clients=2,
                        requests=20)
    finally:
        server.shutdown()
    assert res["requests"] == 20 and res["ok"] == 0 and res["errors"] == 20
    assert res["throughput_rps"] == 0 and res["latency_ms"]["p50"] is None
    assert res["status"] == {"500": 20}


def test_a_backend_failing_at_run_time_gets_its_row_and_the_rest_is_written(tmp_path):
    # QOperator graphs do not compile on OpenVINO: reported in the table, onnxruntime's row kept
    res = CliRunner().invoke(app, ["bench", "demo-int8-qoperator", "--backend",
                                   "onnxruntime,openvino", "--iterations", "1", "--warmup", "0",
                                   "--no-throughput", "-o", str(tmp_path / "b")])
    assert res.exit_code == 1 and "Traceback" not in res.stderr
    doc = json.loads((tmp_path / "b" / "results.json").read_text())
    assert [r["backend"] for r in doc["results"]] == ["onnxruntime"]
    assert [f["backend"] for f in doc["failed"]] == ["openvino"]
    table = (tmp_path / "b" / "results.md").read_text()
    row = next(line for line in table.splitlines() if "failed:" in line)
    header = next(line for line in table.splitlines() if line.startswith("| model"))
    assert "openvino" in row and row.count("|") == header.count("|")
