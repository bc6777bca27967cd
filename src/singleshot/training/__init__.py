"""Training with the MLPerf recipe (torch): target matching and loss, the resumable training loop."""
