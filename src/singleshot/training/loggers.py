"""Where a run's numbers go besides ``results.csv``: TensorBoard event files in ``OUT/tb/`` (when
the ``tensorboard`` package is installed) and an MLflow run (``--mlflow URI``, with mlflow or
mlflow-skinny installed). Only the main process (rank 0) logs.

Each takes the same calls: :meth:`step` after every optimizer step, :meth:`epoch` with the row
``results.csv`` got, :meth:`images` with a few validation images drawn with their predictions,
:meth:`close` at the end. A resumed run continues the same event files (TensorBoard purges the
events past the resumed step) and the same MLflow run.
"""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import numpy as np

from ..errors import UsageError


def tensorboard_available() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


def mlflow_available() -> bool:
    return importlib.util.find_spec("mlflow") is not None


class TensorBoardLog:
    """Scalars (``train/*`` per step, ``epoch/*`` and ``val/*`` per epoch) and validation images
    (``val/image_<k>``, [H, W, 3] uint8 with the predicted boxes drawn) in ``OUT/tb/``."""

    def __init__(self, out: str | Path, resume_step: int = 0) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(Path(out) / "tb"),
                                    purge_step=resume_step + 1 if resume_step else None)

    def step(self, step: int, scalars: dict) -> None:
        for key, value in scalars.items():
            self.writer.add_scalar(f"train/{key}", value, step)

    def epoch(self, step: int, row: dict) -> None:
        for key, value in row.items():
            if key in ("epoch", "step") or value in ("", None):
                continue
            group = "val" if key.startswith("val_") else "epoch"
            self.writer.add_scalar(f"{group}/{key.removeprefix('val_')}", float(value), step)
        self.writer.flush()

    def images(self, step: int, images: list[np.ndarray]) -> None:
        for k, image in enumerate(images):
            self.writer.add_image(f"val/image_{k}", image, step, dataformats="HWC")
        self.writer.flush()

    def close(self, status: str = "FINISHED") -> None:
        self.writer.close()


class MlflowLog:
    """An MLflow run at ``uri`` (a tracking server or a ``file:`` store): the settings as
    params, the per-step loss and per-epoch rows as metrics (step = optimizer step), the
    validation images and, at the end, results.csv/.png and train_config.json as artifacts."""

    def __init__(self, uri: str, out: str | Path, settings: dict, run_id: str | None = None,
                 experiment: str = "singleshot") -> None:
        import mlflow
        from mlflow.entities import Metric

        self._metric = Metric
        if uri.startswith("file:") or "://" not in uri and ":" not in uri[:2]:
            # MLflow 3 refuses its file store unless opted in; a file: URI given here is that
            # choice, made by the user (a server or sqlite: URI is used as it is)
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.out = Path(out)
        try:
            self.client = mlflow.tracking.MlflowClient(tracking_uri=uri)
            if run_id is None:
                exp = self.client.get_experiment_by_name(experiment)
                exp_id = exp.experiment_id if exp else self.client.create_experiment(experiment)
                run = self.client.create_run(exp_id, run_name=self.out.name,
                                             tags={"singleshot.out": str(self.out.resolve())})
                self.run_id = run.info.run_id
                for key, value in settings.items():
                    self.client.log_param(self.run_id, key, str(value)[:6000])
            else:
                self.run_id = run_id
                self.client.update_run(run_id, status="RUNNING")
        except Exception as err:  # noqa: BLE001 - any tracking failure is one line, before work
            raise UsageError(f"{{opt:mlflow}} {uri}: {type(err).__name__}: "
                             f"{str(err).splitlines()[0] if str(err) else ''}") from None

    def step(self, step: int, scalars: dict) -> None:
        self._log({f"train_{k}": v for k, v in scalars.items()}, step)

    def epoch(self, step: int, row: dict) -> None:
        self._log({k: float(v) for k, v in row.items()
                   if k not in ("epoch", "step") and v not in ("", None)}, step)

    def _log(self, metrics: dict, step: int) -> None:
        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[self._metric(k, float(v), now, step)
                                                    for k, v in metrics.items()])

    def images(self, step: int, images: list[np.ndarray]) -> None:
        for k, image in enumerate(images):
            self.client.log_image(self.run_id, image, f"val/step_{step:07d}_image_{k}.png")

    def close(self, status: str = "FINISHED") -> None:
        for name in ("results.csv", "results.png", "train_config.json"):
            if (self.out / name).is_file():
                self.client.log_artifact(self.run_id, str(self.out / name))
        self.client.set_terminated(self.run_id, status=status)


class RunLoggers:
    """The loggers of one run, called together; a no-op on ranks other than 0."""

    def __init__(self, loggers: list) -> None:
        self.loggers = loggers

    def step(self, step: int, scalars: dict) -> None:
        for lg in self.loggers:
            lg.step(step, scalars)

    def epoch(self, step: int, row: dict) -> None:
        for lg in self.loggers:
            lg.epoch(step, row)

    def images(self, step: int, images: list[np.ndarray]) -> None:
        for lg in self.loggers:
            lg.images(step, images)

    def close(self, status: str = "FINISHED") -> None:
        for lg in self.loggers:
            lg.close(status)

    @property
    def mlflow_run_id(self) -> str | None:
        return next((lg.run_id for lg in self.loggers if isinstance(lg, MlflowLog)), None)
