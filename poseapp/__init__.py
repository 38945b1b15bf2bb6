"""poseapp: top-down pose estimation that reproduces the published models' predictions.

Public API (heavy modules load on first use, so ``import poseapp`` is instant)::

    from poseapp import create_model, create_detector, Pipeline, PredictOptions, run_predict
    estimator = create_model("hrnet-w32_coco-256x192")     # zoo name, checkpoint or .onnx/.xml path
    keypoints, scores = estimator([image], [boxes_xyxy])[0]
    pipeline = Pipeline(estimator, create_detector(estimator))  # the model's default boxes (person here)
    report = run_predict(PredictOptions(source="photos/", save_json=True))  # the whole job, as `predict` runs it
    report = run_distributed(PredictOptions(source="photos/", save_json=True), RayOptions(workers=4))  # on Ray
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "create_model": "poseapp.create",
    "create_detector": "poseapp.boxes",
    "PredictOptions": "poseapp.job",
    "RunReport": "poseapp.job",
    "run_predict": "poseapp.job",
    "run_distributed": "poseapp.distributed",
    "RayOptions": "poseapp.distributed",
    "list_models": "poseapp.create",
    "export_model": "poseapp.exporting",
    "Pipeline": "poseapp.pipeline",
    "VideoOptions": "poseapp.pipeline",
    "TopDownEstimator": "poseapp.estimator",
    "open_source": "poseapp.sources",
    "draw": "poseapp.drawing",
    "get_keypoint_set": "poseapp.keypoints",
    "KeypointSet": "poseapp.keypoints",
    "Frame": "poseapp.results",
    "Detections": "poseapp.results",
    "Poses": "poseapp.results",
    "Instance": "poseapp.results",
    "FrameResult": "poseapp.results",
    "Recipe": "poseapp.zoo",
    "PoseAppError": "poseapp.errors",
}

__all__ = sorted(_EXPORTS)
# No exported name is also a submodule's name: once ``poseapp.X`` is imported, the package attribute ``X`` is
# that module, and ``from poseapp import X`` would return it (tests/test_readme.py checks every import order).


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'poseapp' has no attribute '{name}'")
