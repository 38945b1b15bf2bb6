"""The video engine: the stages ``Pipeline`` joins, each a plain function or a small class.

- ``queues``: stages in threads joined by bounded queues (back-pressure; the newest live frame waits).
- ``batching``: cross-frame batching of crops, results in frame order, a latency bound for live sources.
- ``keyframes``: detection every N frames, boxes from the keypoints before between detections.
- ``tracking``: track IDs (ultralytics' ByteTrack with keypoint similarity, IDs taken back on return).
- ``smoothing``: One-Euro and Savitzky-Golay smoothing per track and keypoint.
"""
