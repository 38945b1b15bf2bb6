"""Runtimes: a pose network behind one call, for each backend (PyTorch, ONNX Runtime, OpenVINO).

- ``base``: the ``Runtime`` protocol, the backend and precision names, the CPU checks (bf16 in hardware).
- ``torch_runtime``, ``onnx_runtime``, ``openvino_runtime``: one runtime per backend.
- ``graph``: a model file's input/output shapes checked against a recipe; fixed-batch graphs looped.
- ``export``: our networks as ONNX/OpenVINO files that carry their recipe; the cached export.
- ``auto``: ``backend="auto"``'s measured pick, remembered per machine and model.
- ``select``: which backends can run a model, and building the runtime.
"""
from poseapp.runtimes.base import BACKENDS, PRECISIONS, Runtime

__all__ = ["BACKENDS", "PRECISIONS", "Runtime"]
