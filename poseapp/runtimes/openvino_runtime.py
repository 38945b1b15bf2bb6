"""The OpenVINO runtime: an ONNX graph or an OpenVINO IR (.xml + .bin) compiled for the CPU.

OpenVINO picks bf16 by itself on CPUs that compute it in hardware (AMX, and AVX512-BF16 in recent
releases): fp32 here always sets ``INFERENCE_PRECISION_HINT=f32``, and the compiled model is asked which
precision it runs (``self.precision`` comes from it, not from the request).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from poseapp.errors import CheckpointError, PoseAppError, arg
from poseapp.runtimes.base import reason, require
from poseapp.runtimes.graph import GraphRuntime, check_graph
from poseapp.zoo import Recipe

_HINTS = {"fp32": "f32", "bf16": "bf16"}


def _dims(partial_shape) -> tuple:
    return tuple(d.get_length() if d.is_static else None for d in partial_shape)


def read_model(path: Path):
    ov = require("openvino")
    path = Path(path)
    if path.suffix.lower() == ".xml" and not path.with_suffix(".bin").is_file():
        raise CheckpointError(f"{path}: its weights {path.with_suffix('.bin').name} are not beside it (an OpenVINO "
                              "IR is the .xml and its .bin)")
    try:
        return ov.Core().read_model(str(path))
    except Exception as e:  # OpenVINO raises RuntimeError with a multi-line report
        raise CheckpointError(f"{path}: OpenVINO cannot read it ({reason(e)}): pass a valid .onnx or .xml "
                              "model") from None


def ir_metadata(path: Path) -> dict[str, str]:
    """The ``poseapp`` section of an OpenVINO IR's rt_info (where a poseapp export keeps its recipe)."""
    from poseapp.recipes import FORMAT_KEY, PRECISION_KEY, RECIPE_KEY

    model = read_model(path)
    out = {}
    for key in (RECIPE_KEY, FORMAT_KEY, PRECISION_KEY):
        section = key.split(".")
        if model.has_rt_info(section):
            out[key] = str(model.get_rt_info(section).astype(str))
    return out


class OpenVinoRuntime(GraphRuntime):
    """An OpenVINO compiled model.

    Args:
        path: .onnx or .xml (with its .bin beside it).
        recipe: the recipe its inputs and outputs are checked against.
        precision: ``fp32`` (``INFERENCE_PRECISION_HINT=f32``) or ``bf16``.
        threads: ``INFERENCE_NUM_THREADS``.
        device: ``cpu`` only (OpenVINO's own GPU plugin is for Intel GPUs).
    """

    backend = "openvino"

    def __init__(self, path: str | Path, recipe: Recipe, *, precision: str = "fp32", threads: int = 1,
                 device: str = "cpu") -> None:
        ov = require("openvino")
        if device != "cpu":
            raise PoseAppError(f"{arg('backend')} openvino runs on the CPU here: pass {arg('device')} cpu, or "
                               f"{arg('backend')} torch for {device}")
        if precision not in _HINTS:
            raise PoseAppError(f"{arg('precision')} {precision} is not offered by {arg('backend')} openvino on the "
                               f"CPU: pass fp32 or bf16")
        self.path, self.recipe, self.device = Path(path), recipe, "cpu"
        model = read_model(self.path)
        if len(model.inputs) != 1:
            raise CheckpointError(f"{self.path}: it has {len(model.inputs)} inputs; a pose model takes one (the crops)")
        if model.inputs[0].get_element_type() != ov.Type.f32:
            raise CheckpointError(f"{self.path}: its input is {model.inputs[0].get_element_type().get_type_name()}; "
                                  "poseapp feeds float32 crops (export the model with a float input)")
        self.batch = check_graph(str(self.path), recipe, _dims(model.inputs[0].get_partial_shape()),
                                 [_dims(o.get_partial_shape()) for o in model.outputs])
        config = {"INFERENCE_PRECISION_HINT": _HINTS[precision], "INFERENCE_NUM_THREADS": int(threads),
                  "PERFORMANCE_HINT": "LATENCY"}
        try:
            self.compiled = ov.Core().compile_model(model, "CPU", config)
        except Exception as e:
            raise CheckpointError(f"{self.path}: OpenVINO cannot compile it ({reason(e)})") from None
        ran = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        self.precision = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}.get(ran, ran)
        self._request = self.compiled.create_infer_request()

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        try:
            result = self._request.infer({0: x})
        except Exception as e:  # a shape the graph's inside cannot take, ...
            raise CheckpointError(f"{self.path}: OpenVINO failed on a batch of {len(x)} ({reason(e)})") from None
        return [np.array(result[o]) for o in self.compiled.outputs]

    def __repr__(self) -> str:
        return f"OpenVinoRuntime({self.path.name}, precision={self.precision})"
