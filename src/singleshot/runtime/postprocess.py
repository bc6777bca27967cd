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
from ..core.nms import IOU_THRESHOLD, NmsParams, agnostic_nms
from ..core.spec import ModelSpec
from ..errors import ModelError, UsageError
from ..graph.contract import per_image
from ..graph.nms_constants import expose_nms_inputs, nms_feeds
from ..graph.postprocess import postprocess_model
from .session import make_session


class Postprocessor:
    """The post-processing of one detector, driven per call by (params, classes).

    Modes: ``graph`` - a zoo graph whose NMS options were made inputs
    (:func:`~singleshot.graph.nms_constants.expose_nms_inputs`): :meth:`feeds` go to the backend
    with the image, outputs pass through. ``raw`` - loc/conf heads; decode + NMS run here in a small
    onnxruntime graph with the same inputs. ``fixed`` - a zoo graph whose thresholds are computed
    in the graph: outputs pass through, a stricter score threshold or smaller cap than ``params``
    (the detector's) is applied to them, anything else is refused."""

    def __init__(self, contract: str, spec: ModelSpec, params: NmsParams, *, mode: str,
                 threads: int | None = None, name: str = "model"):
        self.contract, self.spec, self.params, self.name = contract, spec, params, name
        self.mode = mode
        if mode == "raw":
            self.anchors = default_boxes(spec.default_boxes)
            self.session = make_session(expose_nms_inputs(
                postprocess_model(self.anchors, spec.num_classes, params), spec.num_classes),
                threads)

    def feeds(self, params: NmsParams, classes: np.ndarray | None) -> dict:
        """Extra inputs for the backend's graph (graph mode), else none."""
        return nms_feeds(params, self.spec.num_classes, classes) if self.mode == "graph" else {}

    def __call__(self, outputs: list[np.ndarray], params: NmsParams | None = None,
                 classes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The first image's result of :meth:`split`."""
        return self.split(outputs, params, classes, limit=1)[0]

    def split(self, outputs: list[np.ndarray], params: NmsParams | None = None,
              classes: np.ndarray | None = None, limit: int | None = None,
              ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """The graph's outputs (zoo: bboxes [1,K,4], labels [1,K], scores [1,K]; zoo-batch: the
        same [N,K...] padded, and num_detections [N]; raw: loc [N,4,A], conf [N,C+1,A]) -> per
        image (the first ``limit``): boxes [K, 4] xyxy normalised (unclipped), labels [K] 1..C,
        scores [K] descending. ``params``/``classes``: this call's options (None: the
        detector's)."""
        params = params or self.params
        images = self._per_class(outputs, params, classes, limit)
        if not params.agnostic:
            return images
        # across classes, on the per-class result (the graphs have no class-agnostic path);
        # a graph with unknown constants says IoU 0: the zoo's 0.5 then
        iou = params.iou_threshold or IOU_THRESHOLD
        return [tuple(o[keep] for o in (b, lab, s))
                for b, lab, s in images for keep in [agnostic_nms(b, s, iou)]]

    def _per_class(self, outputs, params: NmsParams, classes, limit):
        if self.mode == "raw":
            loc, conf = outputs
            if loc.shape[-1] != self.anchors.shape[0] or conf.shape[1] != self.spec.num_classes + 1:
                raise ModelError(
                    f"{self.name}: graph predicts {loc.shape[-1]} boxes and {conf.shape[1]} classes "
                    f"but its metadata says {self.anchors.shape[0]} and {self.spec.num_classes} + 1")
            feeds = nms_feeds(params, self.spec.num_classes, classes)
            return [tuple(o[0] for o in self.session.run(
                        None, {"loc": loc[i:i + 1], "conf": conf[i:i + 1], **feeds}))
                    for i in range(len(loc) if limit is None else min(limit, len(loc)))]
        images = per_image(outputs, self.contract)[:limit]
        if self.mode == "fixed":  # stricter options applied to the outputs
            self.check_fixed(params, classes)
            n = params.max_det
            images = [(b[s > params.score_threshold][:n], lab[s > params.score_threshold][:n],
                       s[s > params.score_threshold][:n]) for b, lab, s in images]
        return images

    def check_fixed(self, params: NmsParams, classes) -> None:
        """UsageError for options a graph with computed thresholds cannot honour."""
        g = self.params
        if classes is not None or params.iou_threshold != g.iou_threshold or \
                params.score_threshold < g.score_threshold or params.max_det > g.max_det:
            raise UsageError(f"{self.name}: this graph computes its NMS thresholds, so a call can "
                             "only raise the score threshold or lower the detection cap")
