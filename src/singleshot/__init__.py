"""singleshot: the SSD-ResNet34 detector of the ONNX Model Zoo, done right.

Inference needs numpy, pillow and onnxruntime only; torch is needed for export and training.

    >>> from singleshot import Detector
    >>> det = Detector("ssd-12")            # or a path to any zoo-contract / raw-head .onnx
    >>> d = det("photo.jpg")                # Detections: xyxy pixels, scores, category ids, names
"""

from ._version import __version__ as __version__  # noqa: E402
from .core.detections import Detections as Detections  # noqa: E402
from .core.spec import ModelSpec as ModelSpec  # noqa: E402
from .io import draw as _draw  # noqa: E402,F401 - registers Detections.plot's renderer
from .io.images import load_image as load_image  # noqa: E402
from .runtime.detector import Detector as Detector  # noqa: E402

__all__ = ["Detector", "Detections", "ModelSpec", "load_image", "__version__"]
