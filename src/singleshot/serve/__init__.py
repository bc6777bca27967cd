"""The HTTP front end: the Open Inference Protocol v2 (KServe/Triton REST) and a plain /detect, over the same Detector and DetectionReport."""
