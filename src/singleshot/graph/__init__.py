"""ONNX graphs of detectors: contracts, NMS constants, inspection, edits, and the post-processing and preprocessing subgraphs."""
