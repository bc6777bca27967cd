"""torch -> ONNX in the zoo contract or as raw heads, with parity checks (torch)."""
