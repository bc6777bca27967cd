"""Target matching and the MLPerf SSD loss, in torch.

Matching: an anchor is positive when its best IoU with a ground truth is > 0.5; every ground truth
also claims its best anchor. Loss: smooth-L1 on the positives' offsets + cross-entropy on the
positives and the 3x-as-many hardest negatives, divided by the number of positives, averaged over
the images that have any.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..core.boxes import box_convert, box_iou
from ..core.coder import encode

MATCH_IOU = 0.5
NEG_POS_RATIO = 3


class TargetEncoder:
    """Turns ground truth into per-anchor training targets.

    anchors_cxcywh: [A, 4] normalised default boxes (:func:`singleshot.core.anchors.default_boxes`).
    """

    def __init__(self, anchors_cxcywh: np.ndarray, match_iou: float = MATCH_IOU) -> None:
        self.anchors = np.asarray(anchors_cxcywh, np.float32)
        self.anchors_xyxy = box_convert(self.anchors, "cxcywh", "xyxy")
        self.match_iou = match_iou

    def match(self, boxes_xyxy: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One image: boxes [G, 4] xyxy normalised, labels [G] (1..C) ->
        (loc targets [4, A] in the coder's scaled offsets, labels [A], 0 = background)."""
        n_anchor = self.anchors.shape[0]
        if boxes_xyxy.numel() == 0:
            return torch.zeros(4, n_anchor), torch.zeros(n_anchor, dtype=torch.int64)
        # matching and encoding run in numpy with the library's box maths (the data loader's
        # workers, on the CPU); only the targets become tensors
        iou = torch.from_numpy(box_iou(boxes_xyxy.numpy(), self.anchors_xyxy))  # [G, A]
        best_iou, best_gt = iou.max(0)  # per anchor
        best_anchor = iou.argmax(1)  # per ground truth
        best_iou[best_anchor] = 2.0  # each ground truth keeps its best anchor
        best_gt[best_anchor] = torch.arange(boxes_xyxy.shape[0])
        target_labels = labels[best_gt].clone()
        target_labels[best_iou <= self.match_iou] = 0
        g = boxes_xyxy[best_gt].numpy()  # [A, 4]
        loc = torch.from_numpy(encode(g, self.anchors))  # [A, 4]
        return loc.T.contiguous(), target_labels

    def __call__(self, boxes: list[torch.Tensor], labels: list[torch.Tensor]):
        """A batch -> (loc targets [N, 4, A], labels [N, A])."""
        out = [self.match(b, lab) for b, lab in zip(boxes, labels)]
        return torch.stack([o[0] for o in out]), torch.stack([o[1] for o in out])


def ssd_loss(ploc: torch.Tensor, pconf: torch.Tensor, gloc: torch.Tensor,
             glabel: torch.Tensor, per_image: bool = False):
    """ploc [N, 4, A], pconf [N, C+1, A] (logits), gloc [N, 4, A], glabel [N, A] -> scalar;
    ``per_image``: (total, localisation, classification) as [N] tensors before the mean over
    images, the two terms normalised alike (their sum is the total; training sums them over
    its processes and divides by the global number of images)."""
    pos = glabel > 0  # [N, A]
    n_pos = pos.sum(1)  # [N]
    loc = F.smooth_l1_loss(ploc, gloc, reduction="none").sum(1)  # [N, A]
    loc = (loc * pos).sum(1)
    con = F.cross_entropy(pconf, glabel, reduction="none")  # [N, A]
    # hard negative mining: the NEG_POS_RATIO * n_pos negatives with the highest loss
    con_neg = con.detach().clone()
    con_neg[pos] = 0
    rank = con_neg.argsort(1, descending=True).argsort(1)
    neg = rank < (NEG_POS_RATIO * n_pos).clamp(max=pos.shape[1]).unsqueeze(1)
    con = (con * (pos | neg)).sum(1)
    has_pos = (n_pos > 0).float()
    scale = has_pos / n_pos.float().clamp(min=1e-6)
    if per_image:
        return (loc + con) * scale, (loc * scale).detach(), (con * scale).detach()
    return ((loc + con) * scale).mean()
