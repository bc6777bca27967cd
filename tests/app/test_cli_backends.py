"""detect on the command line with OpenVINO and fast preprocessing."""



def test_cli_detect_with_openvino_and_fast(scenes, tmp_path):
    import json

    from typer.testing import CliRunner

    from singleshot.app.cli import app

    res = CliRunner().invoke(app, ["detect", str(scenes[0]), str(scenes[1]), "--backend", "auto",
                                   "--preprocess", "fast", "--streams", "2", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert [i["path"] for i in doc["images"]] == [str(scenes[0]), str(scenes[1])]
    assert all(i["detections"] for i in doc["images"])
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 broken")
    res = CliRunner().invoke(app, ["detect", str(bad), "--backend", "openvino", "--precision", "f16x"])
    assert res.exit_code == 2 and "--precision" in res.stderr
