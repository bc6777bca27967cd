"""The torch model: head channel layout matches the default-box order."""

from singleshot.core.anchors import default_boxes


def test_head_layout_matches_default_box_order():
    """Head channel ``coord*nd + k`` lands in the anchor block ``k*H*W ...`` of its level (box size
    major, then row, column: the order the default boxes are generated in), levels in order."""
    import torch  # the test extra installs it with every other extra

    from singleshot.model import build_model

    model = build_model("300", width=0.125).eval()
    grids = model.cfg.grid_sizes()
    nd = model.cfg.num_anchors_per_location
    with torch.no_grad():
        for head in model.loc:
            head.weight.zero_()
            head.bias.copy_(torch.arange(head.bias.numel(), dtype=torch.float32))
        loc, _ = model(torch.zeros(1, 3, 300, 300))
    start = 0
    for level, (g, n) in enumerate(zip(grids, nd)):
        for k in (0, n - 1):
            for coord in range(4):
                anchor = start + k * g * g + (g - 1) * g + (g - 1)  # bottom-right cell
                assert loc[0, coord, anchor].item() == coord * n + k
        start += n * g * g
    assert start == loc.shape[2] == default_boxes(model.cfg.default_boxes()).shape[0]
