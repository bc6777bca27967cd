"""Shared fixtures: tiny SSD models with realistic score ranges, exported once per session."""

from __future__ import annotations

import random

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # the `torch` extra is installed by .ci/run; never skipped there


def lively_model(cfg_name: str = "300", width: float = 0.125, num_classes: int = 80, seed: int = 0):
    """A narrow SSD-ResNet34 with random weights whose class scores vary like a trained model's
    (a few classes get biases so that candidates exist above 0.05)."""
    from singleshot.model import build_model

    torch.manual_seed(seed)
    model = build_model(cfg_name, width=width, num_classes=num_classes).eval()
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for i, head in enumerate(model.conf):
            nd = model.cfg.num_anchors_per_location[i]
            bias = head.bias.view(num_classes + 1, nd)
            bias.zero_()
            bias[0] = 2.0  # background
            for c in rng.choice(np.arange(1, num_classes + 1), size=min(4, num_classes), replace=False):
                bias[c] = float(rng.uniform(1.5, 4.0))
            head.weight.mul_(4.0)  # spread the logits over locations
    return model


@pytest.fixture(scope="session")
def tiny_model():
    return lively_model()


@pytest.fixture(scope="session")
def tiny_zoo_onnx(tiny_model, tmp_path_factory):
    from singleshot.export import export_onnx

    path = tmp_path_factory.mktemp("models") / "tiny_zoo.onnx"
    export_onnx(tiny_model, path, opset=13)
    return path


@pytest.fixture(scope="session")
def tiny_raw_onnx(tiny_model, tmp_path_factory):
    from singleshot.export import export_onnx

    path = tmp_path_factory.mktemp("models") / "tiny_raw.onnx"
    export_onnx(tiny_model, path, opset=13, raw=True)
    return path


@pytest.fixture
def photo(tmp_path):
    """A photo-like 320x240 RGB JPEG on disk."""
    from PIL import Image

    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:240, 0:320]
    img = np.stack([(xx * 255 / 320), (yy * 255 / 240), ((xx + yy) % 255)], -1)
    img = (img + rng.normal(0, 10, img.shape)).clip(0, 255).astype(np.uint8)
    img[60:180, 100:220] = (220, 40, 40)
    path = tmp_path / "photo.jpg"
    Image.fromarray(img).save(path, quality=92)
    return path


@pytest.fixture(autouse=True)
def _restore_rng():
    """Tests must not leak RNG state into each other."""
    py, np_state, t = random.getstate(), np.random.get_state(), torch.random.get_rng_state()
    yield
    random.setstate(py)
    np.random.set_state(np_state)
    torch.random.set_rng_state(t)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Downloads and caches go to a per-test folder, never to ~/.cache."""
    monkeypatch.setenv("SINGLESHOT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SINGLESHOT_MODELS_URL", raising=False)


def pytest_collection_modifyitems(config, items):
    try:
        has_cuda = torch.cuda.is_available()
    except Exception:  # pragma: no cover
        has_cuda = False
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "needs_cuda" in item.keywords and not has_cuda:
            item.add_marker(skip)
