"""singleshot: the SSD-ResNet34 detector of the ONNX Model Zoo, done right.

Inference needs numpy, pillow and onnxruntime only; torch is needed for export and training.
"""

__version__ = "0.1.0"
