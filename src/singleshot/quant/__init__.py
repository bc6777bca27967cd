"""int8 quantization of detector graphs: the static recipe and the accuracy-aware search."""
