"""Models with random weights whose scores behave like a trained detector's, for tests and
benchmarks (no weights can be downloaded here).

With plain random heads every class probability sits near 1/81, below the 0.05 score threshold,
so NMS would see no candidates and a benchmark would time an NMS that has nothing to do. Here the
background and a few classes get biases, and the class-head weights are scaled so that the
logits vary over locations: some thousands of (box, class) candidates pass 0.05 and NMS fills
its 200-detection cap, as a trained model does on a busy COCO image.
"""

from __future__ import annotations

import numpy as np


def liven_heads(model, seed: int = 0, n_classes: int = 4, scale: float = 4.0,
                class_bias: tuple[float, float] = (1.5, 4.0)) -> None:
    """Give ``model``'s class heads realistic score ranges, in place (see the module doc):
    background bias 2, ``n_classes`` classes with biases drawn from ``class_bias``, Xavier
    weights times ``scale``."""
    import torch

    rng = np.random.default_rng(seed)
    num_classes = model.cfg.num_classes
    with torch.no_grad():
        for i, head in enumerate(model.conf):
            nd = model.cfg.num_anchors_per_location[i]
            bias = head.bias.view(num_classes + 1, nd)
            bias.zero_()
            bias[0] = 2.0  # background
            for c in rng.choice(np.arange(1, num_classes + 1), size=min(n_classes, num_classes),
                                replace=False):
                bias[c] = float(rng.uniform(*class_bias))
            torch.nn.init.xavier_uniform_(head.weight)
            head.weight.mul_(scale)


# The full 1200x1200 model with these settings: 5,900 (box, class) candidates above 0.05 in 23
# classes on a generated scene, and NMS fills its 200 cap (printed by bench/make_model.py).
BENCH_HEADS = {"scale": 6.0, "class_bias": (-1.0, 1.0)}


def lively_model(cfg_name: str = "300", width: float = 1.0, num_classes: int = 80, seed: int = 0,
                 **heads):
    """An SSD-ResNet34 (``cfg_name`` "1200" or "300", channel ``width``) with random weights and
    :func:`liven_heads` (``heads``: its options), in eval mode."""
    import torch

    from . import build_model

    torch.manual_seed(seed)
    model = build_model(cfg_name, width=width, num_classes=num_classes).eval()
    liven_heads(model, seed, **heads)
    return model
