"""The ONNX Runtime runtime: any ONNX pose graph (ours exported, or a user's own) on the CPU provider, or on
CUDA where ``onnxruntime-gpu`` is installed."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from poseapp.errors import CheckpointError, PoseAppError, arg
from poseapp.runtimes.base import reason, require
from poseapp.runtimes.graph import GraphRuntime, check_graph
from poseapp.zoo import Recipe

log = logging.getLogger(__name__)


def _dims(shape) -> tuple:
    return tuple(d if isinstance(d, int) and d > 0 else None for d in shape)


def onnx_metadata(path: Path) -> dict[str, str]:
    """The ONNX file's ``metadata_props`` (where a poseapp export keeps its recipe), after checking that any
    weights it keeps in other files lie beside it (a name, not an absolute path or one climbing out with
    ``..``); those weights are not read here."""
    onnx = require("onnx")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf's DecodeError and friends
        raise CheckpointError(f"{path}: not an ONNX model ({type(e).__name__}): pass a valid .onnx file") from None
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location" and (Path(entry.value).is_absolute() or ".." in Path(entry.value).parts):
                raise CheckpointError(f"{path}: its weights point outside its folder ({entry.value[:80]}): refused; "
                                      "keep external data files beside the .onnx")
    return {p.key: p.value for p in model.metadata_props}


def _session(path: Path, *, threads: int, providers: list | None = None):
    ort = require("onnxruntime")

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph/... types
        raise CheckpointError(f"{path}: ONNX Runtime cannot load it ({reason(e)}): pass a valid .onnx file") from None


class OnnxRuntime(GraphRuntime):
    """An ONNX graph in an ``onnxruntime.InferenceSession``.

    Args:
        path: the .onnx file.
        recipe: the recipe its inputs and outputs are checked against.
        precision: ``fp32`` (ONNX Runtime's CPU provider runs the graph's own types).
        threads: intra-op CPU threads.
        device: ``cpu``, or ``cuda``/``cuda:N`` (CUDA provider where installed; otherwise one warning and the
            CPU).
    """

    backend = "onnxruntime"

    def __init__(self, path: str | Path, recipe: Recipe, *, precision: str = "fp32", threads: int = 1,
                 device: str = "cpu") -> None:
        if precision != "fp32":
            raise PoseAppError(f"{arg('precision')} {precision} is not offered by {arg('backend')} onnxruntime: "
                               f"bf16 runs on {arg('backend')} openvino (or torch, for a checkpoint), fp16 on torch "
                               f"with CUDA")
        self.path, self.recipe, self.precision = Path(path), recipe, precision
        self.device = "cpu"
        providers: list = ["CPUExecutionProvider"]
        cuda = device.startswith("cuda")
        if cuda:
            index = device.split(":")[1] if ":" in device else "0"
            providers = [("CUDAExecutionProvider", {"device_id": int(index)}), "CPUExecutionProvider"]
        self.session = _session(self.path, threads=threads, providers=providers)  # numpy in and out, any provider
        if cuda and self.session.get_providers()[0] != "CUDAExecutionProvider":
            log.warning("onnxruntime runs %s on the CPU: its CUDA provider is not available here (pip install "
                        "onnxruntime-gpu, with CUDA libraries that match it)", self.path.name)
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise CheckpointError(f"{self.path}: it has {len(inputs)} inputs; a pose model takes one (the crops)")
        if inputs[0].type != "tensor(float)":
            raise CheckpointError(f"{self.path}: its input is {inputs[0].type}; poseapp feeds float32 crops "
                                  "(export the model with a float input)")
        self._input = inputs[0].name
        self._outputs = [o.name for o in self.session.get_outputs()]
        self.batch = check_graph(str(self.path), recipe, _dims(inputs[0].shape),
                                 [_dims(o.shape) for o in self.session.get_outputs()])

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        try:
            return self.session.run(self._outputs, {self._input: x})
        except Exception as e:  # a shape the graph's inside cannot take, ...
            raise CheckpointError(f"{self.path}: ONNX Runtime failed on a batch of {len(x)} ({reason(e)})") from None

    def __repr__(self) -> str:
        return f"OnnxRuntime({self.path.name}, precision={self.precision}, providers={self.session.get_providers()})"
