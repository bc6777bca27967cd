"""Files in and out: image decoding, source expansion, annotated drawing, atomic writes and output folders."""
