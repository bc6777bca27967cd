"""Running a detector: sessions, backends (onnxruntime, OpenVINO, torch), preprocessing, the Detector and the overlapped pipeline."""
