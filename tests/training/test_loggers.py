"""TensorBoard event files and an MLflow run (a local file store), as people read them back:
scalars per step and per epoch, validation images with their boxes, a resumed run continuing the
same logs without duplicates; progress lines in logs every --log-every steps."""

import subprocess
import sys

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from singleshot.data.synth import write_dataset
from singleshot.training.loop import TrainConfig, train


@pytest.fixture(scope="module")
def nine(tmp_path_factory):
    root = tmp_path_factory.mktemp("logs") / "set"
    write_dataset(root, 9, seed=4, workers=1)
    return root


def _cfg(data, out, steps, store):
    return TrainConfig(data=str(data), out=str(out), val=str(data), width=0.125, batch=8,
                       warmup=0, lr=1e-3, optimizer="adamw", workers=0, milestones=(1000,),
                       max_steps=steps, eval_every=1, eval_images=3, val_images=2,
                       mlflow=f"file:{store}")


def test_tensorboard_and_mlflow_hold_the_run_and_its_resumption(nine, tmp_path):
    from mlflow.tracking import MlflowClient

    out, store = tmp_path / "run", tmp_path / "mlruns"
    train(_cfg(nine, out, 4, store))  # 2 steps an epoch: 2 epochs, each evaluated
    train(_cfg(nine, out, 6, store), resume=True)

    tb = EventAccumulator(str(out / "tb"), size_guidance={"images": 0, "scalars": 0})
    tb.Reload()
    tags = tb.Tags()
    assert {"train/loss", "train/loss_loc", "train/loss_cls", "train/lr", "epoch/loss",
            "epoch/images_per_s", "val/AP", "val/AP50"} <= set(tags["scalars"])
    assert [e.step for e in tb.Scalars("train/loss")] == [1, 2, 3, 4, 5, 6]
    assert [e.step for e in tb.Scalars("val/AP")] == [2, 4, 6]
    assert {"val/image_0", "val/image_1"} <= set(tags["images"])
    image = tb.Images("val/image_0")[-1]
    assert image.width > 0 and image.height > 0 and image.step == 6

    client = MlflowClient(tracking_uri=f"file:{store}")
    runs = client.search_runs([client.get_experiment_by_name("singleshot").experiment_id])
    assert len(runs) == 1  # the resumed run continued it
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["batch"] == "8" and run.data.params["optimizer"] == "adamw"
    history = client.get_metric_history(run.info.run_id, "train_loss")
    assert sorted(m.step for m in history) == [1, 2, 3, 4, 5, 6]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_AP")] == [2, 4, 6]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"results.csv", "results.png", "train_config.json", "val"} <= artifacts
    assert any(a.path.endswith("image_0.png") for a in client.list_artifacts(run.info.run_id, "val"))
    # the three say the same of every epoch: results.csv, TensorBoard's epoch/*, MLflow's
    import csv

    with (out / "results.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [2, 4, 6]
    for key in ("loss", "loss_loc", "loss_cls"):
        tb_values = {e.step: e.value for e in tb.Scalars(f"epoch/{key}")}
        ml_values = {m.step: m.value for m in client.get_metric_history(run.info.run_id, key)}
        for r in rows:
            assert tb_values[int(r["step"])] == pytest.approx(float(r[key]), abs=1e-5)
            assert ml_values[int(r["step"])] == pytest.approx(float(r[key]), abs=1e-5)


def test_log_lines_every_n_steps_and_no_tensorboard(nine, tmp_path):
    run = subprocess.run([sys.executable, "-m", "singleshot", "train", "--data", str(nine), "-o",
                          str(tmp_path / "r"), "--width", "0.125", "--batch", "2",
                          "--max-steps", "6", "--loader-workers", "0", "--log-every", "2",
                          "--no-tensorboard"], capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr
    lines = [ln for ln in run.stderr.splitlines() if ln.startswith("epoch 1/2:")]
    # 5 steps in epoch 1 (9 images, batch 2): a line at steps 2 and 4, each with loss and rate
    assert [ln.split(":")[1].split()[0] for ln in lines] == ["2/5", "4/5"], run.stderr
    assert all("loss" in ln and "img/s" in ln for ln in lines)
    assert not (tmp_path / "r" / "tb").exists()


def test_mlflow_at_an_unusable_uri_is_one_line_before_training(nine, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    run = subprocess.run([sys.executable, "-m", "singleshot", "train", "--data", str(nine), "-o",
                          str(tmp_path / "r"), "--width", "0.125", "--max-steps", "1",
                          "--mlflow", f"file:{blocker}/store"],
                         capture_output=True, text=True, timeout=240)
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr and "error: --mlflow" in run.stderr
    assert not (tmp_path / "r" / "last.pt").exists()
