"""Image decoding: any file PIL reads -> RGB uint8 [H, W, 3], with clear errors for bad input.

Handles zero-byte, truncated and non-image files, oversized headers (checked before decoding),
every PIL mode (grayscale, CMYK, palette, alpha, 16-bit, float) and EXIF orientation.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ImageError
from .fetch import read_source

# Default limit on decoded pixels (a 16k x 16k image): a header that claims more is refused
# before any pixel is decoded, so a decompression bomb cannot exhaust memory.
MAX_PIXELS = 16384 * 16384
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                    ".pgm", ".pbm", ".jfif")


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB. High-bit-depth modes are scaled to 8 bits instead of clipped."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        gray = np.clip(np.round(arr * (255.0 / peak)), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        gray = np.clip(np.nan_to_num((arr - lo) * scale), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    # Alpha is dropped (not composited), as the reference's convert("RGB") does.
    return img.convert("RGB")


def as_rgb(image) -> np.ndarray:
    """A decoded image -> RGB uint8 [H, W, 3]: a PIL image in any mode (converted as files are),
    or a uint8 array [H, W] (grayscale), [H, W, 1], [H, W, 3] (RGB) or [H, W, 4] (RGBA: alpha
    dropped, as the reference's convert("RGB")). ImageError for anything else."""
    if isinstance(image, Image.Image):
        return np.asarray(_to_rgb(image), dtype=np.uint8)
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ImageError(f"expected a uint8 image array, got dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4) or 0 in arr.shape[:2]:
        raise ImageError(f"expected an image array [H, W], [H, W, 1], [H, W, 3] or [H, W, 4], "
                         f"got shape {list(arr.shape)}")
    if arr.shape[2] == 1:
        return np.repeat(arr, 3, axis=2)
    return arr[:, :, :3] if arr.shape[2] == 4 else arr


_EXIF_WARNED = []


def exif_upright(img: Image.Image, name: str) -> Image.Image:
    """EXIF orientation applied; EXIF that PIL cannot parse (a tag of an unexpected type, e.g.
    ImageWidth stored as UNDEFINED, makes ``exif_transpose`` raise) counts as none - said once
    per process, naming the first such file."""
    try:
        return ImageOps.exif_transpose(img)
    except Exception as err:  # noqa: BLE001 - struct.error, ValueError, ... from PIL's parser
        if not _EXIF_WARNED:
            _EXIF_WARNED.append(name)
            from ..progress import resolve

            resolve(None).note(f"{name}: its EXIF cannot be read ({type(err).__name__}); "
                               "taken as no orientation (said once, for the first such file)")
        return img


def load_image(source: str | os.PathLike | bytes, *, exif: bool = True,
               max_pixels: int = MAX_PIXELS, name: str | None = None) -> np.ndarray:
    """Decode ``source`` (a path, an fsspec URL, or encoded bytes) -> RGB uint8 [H, W, 3].

    exif: apply the EXIF orientation tag (phone photos come out upright); evaluation turns it off
    because COCO annotations are in the stored pixel frame. Raises ImageError with a one-line
    message naming the file (``name``, for bytes read elsewhere) and the problem: the same
    message for a file decoded here and for its bytes read by a cluster task.
    """
    if isinstance(source, (bytes, bytearray)):
        name = name or "<bytes>"
        if not source:
            raise ImageError(f"{name}: empty input (0 bytes)")
    else:
        name = name or str(source)
        source = read_source(source)
    with _opened(source, name, max_pixels) as img:
        try:
            img.load()
            if exif:
                img = exif_upright(img, name)
            rgb = _to_rgb(img)
            return np.asarray(rgb, dtype=np.uint8)
        except (OSError, ValueError, SyntaxError, EOFError) as err:
            raise _decode_error(name, err) from None


def image_pixels(data: bytes, *, max_pixels: int = MAX_PIXELS, name: str = "<bytes>") -> int:
    """The pixel count of encoded ``data`` read from its header alone (nothing is decoded), with
    :func:`load_image`'s ImageErrors: what a server admits a request by before decoding it."""
    if not data:
        raise ImageError(f"{name}: empty input (0 bytes)")
    with _opened(data, name, max_pixels) as img:
        w, h = img.size
        return w * h


@contextlib.contextmanager
def _opened(source: bytes, name: str, max_pixels: int):
    """PIL's lazy image of ``source`` (header read, pixels not), its size checked against
    ``max_pixels``; ImageError (one line) for what cannot be opened."""
    try:
        fp = io.BytesIO(source)
        # PIL refuses over 2 * Image.MAX_IMAGE_PIXELS (~179 MP) on its own, before our limit is
        # seen; our check below replaces its guard, so raise PIL's (never lower it) to ours
        if Image.MAX_IMAGE_PIXELS is not None and max_pixels > 2 * Image.MAX_IMAGE_PIXELS:
            Image.MAX_IMAGE_PIXELS = max_pixels // 2 + 1
        with fp, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(fp)
            w, h = img.size
            if w * h > max_pixels:
                raise ImageError(
                    f"{name}: image is {w}x{h} = {w * h} pixels, over the limit of {max_pixels}"
                    " (raise it with --max-pixels, max_pixels= in Python, if the file is trusted)"
                )
            if w < 1 or h < 1:
                raise ImageError(f"{name}: image has no pixels ({w}x{h})")
            yield img
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image, or a format that cannot be read") from None
    except Image.DecompressionBombError as err:  # PIL's own guard fired before ours
        raise ImageError(f"{name}: image is over the limit of decodable pixels ({err})") from None
    except (OSError, ValueError, SyntaxError, EOFError) as err:
        raise _decode_error(name, err) from None


def _decode_error(name: str, err: Exception) -> ImageError:
    msg = str(err) or type(err).__name__
    if "truncated" in msg or isinstance(err, EOFError):
        msg = f"file is truncated or corrupt ({msg})"
    return ImageError(f"{name}: cannot decode image: {msg}")

