"""The export check: the graph against torch on the same input (heads), and its in-graph
post-processing against the numpy reference - on the model's own heads up to the order of tied
scores, and exactly on probe heads with a trained model's score range."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import onnx.utils
import torch

from ..core.anchors import default_boxes
from ..core.nms import NmsParams, postprocess_raw
from ..errors import ModelError
from ..graph.contract import per_image


@dataclass
class ParityReport:
    """Export check: max |ORT - torch| of the head outputs; the zoo outputs against the numpy
    NMS on the graph's own heads (``detections``; ``tied``: how many differ from the reference
    only by the order of tied scores; ``unmatched``: detections no tie order explains) and on
    synthetic heads with a realistic score range (``probe_detections``)."""

    loc_max_abs: float
    conf_max_abs: float
    detections: int
    unmatched: int
    tied: int = 0
    probe_detections: int = 0

    def __str__(self) -> str:
        ties = f" ({self.tied} differ only in the order of tied scores)" if self.tied else ""
        return (f"parity: loc max|diff| {self.loc_max_abs:.2e}, conf max|diff| "
                f"{self.conf_max_abs:.2e}, {self.detections} detections, {self.unmatched} "
                f"unmatched{ties}; post-processing probe: {self.probe_detections} detections, exact")


def sample_input(size: int, seed: int = 0) -> np.ndarray:
    """A smooth deterministic image-like input [1,3,S,S] (normalised pixel range)."""
    rng = np.random.default_rng(seed)
    coarse = rng.normal(0, 1.0, (1, 3, 8, 8)).astype(np.float32)
    t = torch.nn.functional.interpolate(torch.from_numpy(coarse), size=(size, size),
                                        mode="bilinear", align_corners=False)
    return (t.numpy() + rng.normal(0, 0.2, (1, 3, size, size)).astype(np.float32))


def match_detections(a: tuple, b: tuple, box_tol: float = 1e-4, score_tol: float = 1e-5) -> int:
    """How many detections lack a partner: those of ``a`` (boxes, labels, scores) with no unused
    detection of ``b`` of the same label, score within ``score_tol`` and box within ``box_tol``
    (tie order may differ), plus any surplus of ``b``."""
    (ba, la, sa), (bb, lb, sb) = a, b
    used = np.zeros(len(sb), dtype=bool)
    misses = 0
    for i in range(len(sa)):
        ok = (~used) & (lb == la[i]) & (np.abs(sb - sa[i]) <= score_tol) & \
             (np.abs(bb - ba[i]).max(axis=1, initial=0) <= box_tol)
        hit = np.flatnonzero(ok)
        if hit.size:
            used[hit[0]] = True
        else:
            misses += 1
    return misses + max(0, len(sb) - len(sa))


def probe_heads(num_anchors: int, num_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic heads ``loc`` [1,4,A], ``conf`` [1,C+1,A] with a trained model's score range:
    a strong background, a few classes with candidates above 0.05 at hundreds of boxes,
    continuous scores (no ties), so the post-processing is checked exactly whatever the weights."""
    rng = np.random.default_rng(seed)
    loc = rng.normal(0, 0.5, (1, 4, num_anchors)).astype(np.float32)
    conf = rng.normal(0, 1.0, (1, num_classes + 1, num_anchors)).astype(np.float32)
    conf[0, 0] += 3.0
    lively = rng.choice(np.arange(1, num_classes + 1), size=min(num_classes, 4), replace=False)
    conf[0, lively] += rng.uniform(0.5, 2.5, (lively.size, 1)).astype(np.float32)
    return loc, conf


def postprocess_problems(got: tuple, loc: np.ndarray, conf: np.ndarray, anchors: np.ndarray,
                            params: NmsParams) -> tuple[list[str], int]:
    """Problems of the zoo outputs ``got`` for heads ``loc`` [4,A], ``conf`` [C+1,A], and how
    many detections differ from the numpy reference (by tie order, when there is no problem)."""
    from ..core.coder import decode, softmax
    from ..core.nms import nms_violations

    ref = postprocess_raw(loc, conf, anchors, params)
    problems = nms_violations(got, decode(loc.T, anchors), softmax(conf, axis=0)[1:], params)
    if len(got[2]) != len(ref[2]):
        problems.append(f"{len(got[2])} detections, the reference has {len(ref[2])}")
    elif not np.allclose(np.sort(got[2]), np.sort(ref[2]), atol=1e-5, rtol=0):
        problems.append("the scores differ from the reference's")
    return problems, match_detections(got, ref)


def check_parity(proto: onnx.ModelProto, model: torch.nn.Module, x: np.ndarray | None = None,
                 tol: float = 1e-3) -> ParityReport:
    """Run ``proto`` in onnxruntime and ``model`` in torch on the same input and compare.

    Head outputs must agree within ``tol`` relative to their magnitude. For zoo graphs the
    in-graph post-processing must be a valid NMS of the graph's own heads that keeps the
    reference's scores (:func:`singleshot.core.nms.nms_violations`: which of two tied boxes survives
    is undefined, and a checkpoint whose softmax saturates has hundreds of ties), and must equal
    :func:`singleshot.core.nms.postprocess_raw` exactly on :func:`probe_heads`, whose continuous
    scores have no ties.
    """
    from ..graph.contract import graph_io
    from ..graph.edit import with_outputs
    from ..graph.nms_constants import read_nms_params
    from ..runtime.session import make_session

    io_ = graph_io(proto)
    batched = io_.contract == "zoo-batch"
    x = sample_input(model.cfg.input_size) if x is None else x
    if batched and isinstance(io_.input_shape[0], int):
        x = np.concatenate([sample_input(model.cfg.input_size, seed=k)
                            for k in range(io_.input_shape[0])])
    elif batched:  # a dynamic batch: three different images in one call
        x = np.concatenate([sample_input(model.cfg.input_size, seed=k) for k in range(3)])
    # zoo graphs: expose the heads too, to check the post-processing on them
    zoo = io_.contract in ("zoo", "zoo-batch")
    sess = make_session(with_outputs(proto, ("loc", "conf")) if zoo else proto)
    names = [o.name for o in sess.get_outputs()]
    outs = dict(zip(names, sess.run(names, {"image": x})))
    with torch.no_grad():
        tloc, tconf = (t.numpy() for t in model.eval()(torch.from_numpy(x)))
    dl = float(np.abs(outs["loc"] - tloc).max())
    dc = float(np.abs(outs["conf"] - tconf).max())
    report = ParityReport(dl, dc, 0, 0)
    if dl > tol * max(1.0, float(np.abs(tloc).max())) or \
            dc > tol * max(1.0, float(np.abs(tconf).max())):
        raise ModelError(f"export parity check failed: {report}")
    if not zoo:
        return report
    anchors = default_boxes(model.cfg.default_boxes())
    params = read_nms_params(proto) or NmsParams()
    for i, got in enumerate(per_image([outs[n] for n in io_.outputs], io_.contract)):  # every image of a batch alone
        problems, differ = postprocess_problems(got, outs["loc"][i], outs["conf"][i], anchors,
                                                params)
        report.detections += len(got[2])
        report.unmatched += len(problems)
        report.tied += differ if not problems else 0
        if problems:
            raise ModelError(f"export parity check failed (post-processing, image {i}): "
                             f"{problems[0]}")
    # the graph's own post-processing on realistic synthetic heads: no ties, so exact
    typed = onnx.shape_inference.infer_shapes(proto)  # the extracted inputs need their types
    post = onnx.utils.Extractor(typed).extract_model(["loc", "conf"], list(io_.outputs))
    heads = [probe_heads(anchors.shape[0], model.cfg.num_classes, seed=k)
             for k in range(len(x) if batched else 1)]
    loc, conf = (np.concatenate([h[j] for h in heads]) for j in (0, 1))
    run = make_session(post).run(list(io_.outputs), {"loc": loc, "conf": conf})
    for i, got in enumerate(per_image(run, io_.contract)):
        problems, differ = postprocess_problems(got, loc[i], conf[i], anchors, params)
        report.probe_detections += len(got[2])
        if problems or differ:
            raise ModelError(f"export parity check failed (post-processing on probe heads, "
                             f"image {i}): " + (problems[0] if problems else
                                                f"{differ} detections differ"))
    return report



def rebatch_checked(model: str, out, n: int = 4) -> str:
    """Re-batch the zoo graph ``model`` (a path or registry name) into ``out`` (the batched zoo
    contract, :func:`singleshot.graph.postprocess.rebatch_zoo`) after checking that a batch of
    ``n`` generated scenes gives each scene the original graph's detections. Returns the report."""
    from ..data.synth import make_scene
    from ..graph.contract import load_model
    from ..graph.postprocess import rebatch_zoo
    from ..io.files import atomic_path
    from ..runtime.detector import Detector, resolve_model_path

    source = resolve_model_path(model)
    batched = rebatch_zoo(load_model(source))
    one, many = Detector(source), Detector(batched)
    images = [make_scene(4242, k)[0] for k in range(n)]
    total = 0
    for k, (im, d) in enumerate(zip(images, many.detect_batch(images))):
        ref = one(im)
        total += len(ref)
        if len(d) != len(ref) or not (d.labels == ref.labels).all() or \
                not np.allclose(d.scores, ref.scores, atol=1e-5):
            raise ModelError(f"re-batch check failed: image {k} of the batch gives other "
                             "detections than the batch-1 graph")
    with atomic_path(out) as tmp:
        onnx.save(batched, str(tmp))
    return f"parity: a batch of {n} scenes gives each its batch-1 detections ({total} in all)"
