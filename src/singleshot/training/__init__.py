"""Training with the MLPerf recipe (torch): COCO-format datasets and SSD augmentations, target
matching and loss, the resumable training loop."""
