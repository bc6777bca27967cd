"""Datasets: the synthetic scene generator (COCO-format scenes of shapes, no torch)."""
