"""Shared fixtures: tiny SSD models with realistic score ranges, exported once per session."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from helpers import lively_model


@pytest.fixture(scope="session")
def make_model():
    """The :func:`lively_model` factory, for tests that need other class counts or sizes."""
    return lively_model


@pytest.fixture(scope="session")
def tiny_model():
    return lively_model()


@pytest.fixture(scope="session")
def tiny_zoo_onnx(tiny_model, tmp_path_factory):
    from singleshot.export.exporter import export_onnx

    path = tmp_path_factory.mktemp("models") / "tiny_zoo.onnx"
    export_onnx(tiny_model, path, opset=13)
    return path


@pytest.fixture(scope="session")
def tiny_raw_onnx(tiny_model, tmp_path_factory):
    from singleshot.export.exporter import export_onnx

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


@pytest.fixture(scope="session")
def scenes(tmp_path_factory):
    """Six synthetic scenes (the demo model's domain), written once per session."""
    from singleshot.data.synth import write_dataset

    root = tmp_path_factory.mktemp("scenes")
    write_dataset(root, 6, seed=3, workers=1)
    return sorted((root / "images").iterdir())


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium driven by Playwright (no browser downloaded by Playwright): headless,
    no sandbox (CI runs as root), background networking off, a fake camera that needs no
    permission prompt. The one browser fixture of every browser test; per module, because
    Playwright's sync API keeps an event loop running in the main thread while it is open."""
    import shutil

    from playwright.sync_api import sync_playwright

    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "Debian's chromium is not installed (.ci/run installs it with apt)"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, headless=True, args=[
            "--no-sandbox", "--disable-background-networking", "--disable-component-update",
            "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"])
        yield b
        b.close()
