"""Files in and out: image decoding, source expansion and reading (local or fsspec URLs),
annotated drawing, atomic writes and output folders, the run journal, H.264 video files."""
