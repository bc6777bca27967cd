"""The server a user writes in ten minutes, for `singleshot bench --server` to compare with:
a FastAPI `def` endpoint taking the image as the body, PIL decode + the card's preprocessing, one
onnxruntime session with default threads, detections as JSON.

    python bench/naive_server.py MODEL.onnx [--port 8001]     # binds 127.0.0.1
"""

from __future__ import annotations

import argparse
import io

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import Body, FastAPI
from PIL import Image

MEAN, STD = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)


def build(model: str) -> FastAPI:
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    size = session.get_inputs()[0].shape[2:]
    app = FastAPI()

    @app.post("/detect")
    def detect(data: bytes = Body(..., media_type="image/jpeg")) -> dict:  # a plain `def`
        return run(data)

    def run(data: bytes) -> dict:
        img = Image.open(io.BytesIO(data)).convert("RGB")
        w, h = img.size
        x = np.asarray(img.resize((size[1], size[0]), Image.BILINEAR), np.float32) / 255
        x = ((x - MEAN) / STD).transpose(2, 0, 1)[None].astype(np.float32)
        boxes, labels, scores = session.run(None, {session.get_inputs()[0].name: x})
        keep = scores[0] > 0.25
        b = boxes[0][keep] * np.array([w, h, w, h], np.float32)
        return {"detections": [{"box": [round(float(v), 2) for v in bb], "label": int(lab),
                                "score": round(float(s), 5)}
                               for bb, lab, s in zip(b, labels[0][keep], scores[0][keep])]}

    return app


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--port", type=int, default=8001)
    args = ap.parse_args()
    uvicorn.run(build(args.model), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
