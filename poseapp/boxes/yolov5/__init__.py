"""Classic ultralytics/yolov5 detectors (v5.0-v7.0 checkpoints, the seed's ``crowdhuman_yolov5m.pt``), without
the yolov5 package: ``checkpoint`` (read weights-only), ``network`` (built from the file's description),
``processing`` (the seed's letterbox and NMS), ``detector`` (``YoloV5Detector``)."""
