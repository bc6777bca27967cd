"""Datasets: the synthetic scene and video generators (COCO-format scenes of shapes, MOT
sequences; no torch), and the COCO / YOLO / Pascal VOC layouts read into one COCO form and
written back out (:mod:`.formats`)."""
