"""Target matching and the SSD loss, by hand."""

import numpy as np
import pytest
import torch

from singleshot.core.coder import decode
from singleshot.training.loss import TargetEncoder, ssd_loss


def test_matching_hand_made():
    anchors = np.array([[0.25, 0.25, 0.5, 0.5],    # 0: top-left quadrant
                        [0.75, 0.75, 0.5, 0.5],    # 1: bottom-right quadrant
                        [0.5, 0.5, 0.2, 0.2],      # 2: small centre box
                        [0.3, 0.25, 0.5, 0.5]], np.float32)  # 3: near anchor 0
    enc = TargetEncoder(anchors)
    gt = torch.tensor([[0.0, 0.0, 0.5, 0.5],       # exactly anchor 0; IoU with 3 is 0.67
                       [0.45, 0.45, 0.56, 0.56]])  # small: best anchor 2 (IoU 0.30 < 0.5)
    loc, lab = enc.match(gt, torch.tensor([3, 5]))
    assert lab.tolist() == [3, 0, 5, 3]  # anchor 2 forced; anchor 3 by IoU > 0.5; anchor 1 none
    assert torch.allclose(loc[:, 0], torch.zeros(4), atol=1e-6)  # perfect anchor: zero offsets
    boxes = decode(loc.T.numpy(), anchors)
    np.testing.assert_allclose(boxes[[0, 2, 3]], gt.numpy()[[0, 1, 0]], atol=1e-5)
    empty_loc, empty_lab = enc.match(torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64))
    assert (empty_lab == 0).all() and empty_loc.shape == (4, 4)


def test_loss_hand_made():
    a = 40
    glabel = torch.zeros(2, a, dtype=torch.int64)
    glabel[0, :2] = torch.tensor([1, 2])  # image 0: 2 positives; image 1: none
    gloc = torch.randn(2, 4, a)
    good_conf = torch.full((2, 3, a), -10.0)
    good_conf[:, 0, :] = 10.0
    good_conf[0, 0, :2] = -10.0
    good_conf[0, 1, 0] = good_conf[0, 2, 1] = 10.0
    assert ssd_loss(gloc.clone(), good_conf, gloc, glabel).item() < 1e-6  # perfect prediction
    # a wrong offset of 1 on one coordinate costs smooth-L1 0.5 / 2 positives, averaged over 2 images
    off = gloc.clone()
    off[0, 0, 0] += 1.0
    assert ssd_loss(off, good_conf, gloc, glabel).item() == pytest.approx(0.5 / 2 / 2, abs=1e-5)
    # hard negatives: exactly 3 x 2 = 6 negatives count; making a 7th-worst negative worse is free
    conf = good_conf.clone()
    conf[0, 1, 2:] = torch.linspace(9, 0, a - 2)  # negatives with decreasing confusion
    base = ssd_loss(gloc, conf, gloc, glabel).item()
    conf2 = conf.clone()
    conf2[0, 1, 10] = 0.5  # the 9th hardest negative changes, but it is not among the 6
    assert ssd_loss(gloc, conf2, gloc, glabel).item() == pytest.approx(base, rel=1e-6)
    conf3 = conf.clone()
    conf3[0, 1, 3] = 20.0  # among the 6 hardest: costs more
    assert ssd_loss(gloc, conf3, gloc, glabel).item() > base
