"""The detector's facts in numpy: model spec, default boxes, box coder and formats, COCO label maps, the zoo NMS reference, Detections."""
