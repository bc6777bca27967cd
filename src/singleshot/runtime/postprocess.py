"""The last stage of a detector: a backend's outputs for one image -> (boxes, labels, scores).

zoo graphs post-process in the graph: their outputs pass through, filtered only where the user
asked for a stricter score threshold or a smaller cap than the graph's (exactly equivalent to
rewriting the constants, and cheaper). Raw-head graphs (loc, conf) get the zoo's decode + NMS as a
second small onnxruntime graph (:func:`singleshot.graph.postprocess.postprocess_model`), the
numpy :mod:`singleshot.core.nms` being the reference it is tested against.
"""

from __future__ import annotations

import numpy as np

from ..core.anchors import default_boxes
from ..core.nms import NmsParams
from ..core.spec import ModelSpec
from ..errors import ModelError
from ..graph.postprocess import postprocess_model
from .session import make_session


class Postprocessor:
    """``contract`` zoo or raw; ``params`` the thresholds wanted; ``filter_outputs``: apply
    ``params``' score threshold and cap to zoo outputs (when stricter than the graph's)."""

    def __init__(self, contract: str, spec: ModelSpec, params: NmsParams, *,
                 filter_outputs: bool = False, threads: int | None = None, name: str = "model"):
        self.contract, self.spec, self.params, self.name = contract, spec, params, name
        self.filter_outputs = filter_outputs
        if contract == "raw":
            self.anchors = default_boxes(spec.default_boxes)
            self.session = make_session(postprocess_model(self.anchors, spec.num_classes, params),
                                        threads)

    def __call__(self, outputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The graph's outputs (zoo: bboxes [1,K,4], labels [1,K], scores [1,K]; raw: loc
        [N,4,A], conf [N,C+1,A]) -> boxes [K, 4] xyxy normalised (unclipped), labels [K] 1..C,
        scores [K] descending, of the first image."""
        if self.contract == "raw":
            loc, conf = outputs
            if loc.shape[-1] != self.anchors.shape[0] or conf.shape[1] != self.spec.num_classes + 1:
                raise ModelError(
                    f"{self.name}: graph predicts {loc.shape[-1]} boxes and {conf.shape[1]} classes "
                    f"but its metadata says {self.anchors.shape[0]} and {self.spec.num_classes} + 1")
            outputs = self.session.run(None, {"loc": loc[:1], "conf": conf[:1]})
        boxes, labels, scores = (o[0] for o in outputs)  # drop the batch dim
        if self.filter_outputs:
            keep = scores > self.params.score_threshold
            n = self.params.max_det
            boxes, labels, scores = boxes[keep][:n], labels[keep][:n], scores[keep][:n]
        return boxes, labels, scores
