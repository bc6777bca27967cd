"""Image decoding: EXIF, odd modes, bad files, the pixel limit."""

import numpy as np
import pytest
from PIL import Image

from helpers import make_corpus
from singleshot.errors import ImageError
from singleshot.io.images import load_image
from singleshot.runtime.detector import Detector


def test_exif_orientation(tmp_path, tiny_zoo_onnx):
    img = Image.new("RGB", (64, 32), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = tmp_path / "phone.jpg"
    img.save(path, exif=exif)
    assert load_image(path).shape == (64, 32, 3)
    assert load_image(path, exif=False).shape == (32, 64, 3)
    d = Detector(tiny_zoo_onnx)(path)
    assert (d.width, d.height) == (32, 64)
    d = Detector(tiny_zoo_onnx, exif=False)(path)
    assert (d.width, d.height) == (64, 32)


def test_odd_images_decode(tmp_path):
    good, bad = make_corpus(tmp_path / "c")
    for name in good:
        arr = load_image(tmp_path / "c" / name)
        assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3, name
    g16 = load_image(tmp_path / "c" / "gray16.png")
    g8 = load_image(tmp_path / "c" / "gray.png")
    assert np.abs(g16.astype(int) - g8.astype(int)).max() <= 1  # scaled, not clipped to 255
    messages = {}
    for name in bad:
        with pytest.raises(ImageError) as err:
            load_image(tmp_path / "c" / name)
        messages[name] = str(err.value)
        assert name in messages[name] and "\n" not in messages[name]
    assert "empty" in messages["empty.jpg"]
    assert "truncated" in messages["truncated.jpg"]
    assert "not an image" in messages["notes.jpg"]
    assert "over the limit" in messages["huge.png"]
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "missing.jpg")


def test_max_pixels_reaches_past_pils_own_limit(tmp_path):
    """A 15000x15000 (225 MP) image is under the default limit of 16384x16384 and decodes,
    though PIL alone refuses anything over ~179 MP; a lower limit still refuses it."""
    path = tmp_path / "big.png"
    Image.new("1", (15000, 15000)).save(path)  # 27 kB on disk
    assert load_image(path).shape == (15000, 15000, 3)
    with pytest.raises(ImageError, match="over the limit of 200000000"):
        load_image(path, max_pixels=200_000_000)
