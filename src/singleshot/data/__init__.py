"""Datasets: the synthetic scene generator, COCO-format training data and SSD augmentations."""
