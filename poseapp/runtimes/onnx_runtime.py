"""The ONNX Runtime runtime: any ONNX pose graph (ours exported, or a user's own) on the CPU provider, or on
CUDA where ``onnxruntime-gpu`` is installed."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from poseapp.errors import CheckpointError, PoseAppError, arg
from poseapp.runtimes.graph import check_graph, check_outputs, run_fixed_batch
from poseapp.zoo import Recipe

log = logging.getLogger(__name__)


def _dims(shape) -> tuple:
    return tuple(d if isinstance(d, int) and d > 0 else None for d in shape)


def onnx_metadata(path: Path) -> dict[str, str]:
    """The ONNX file's ``metadata_props`` (where a poseapp export keeps its recipe); its weights are not read
    when they are stored beside it."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf's DecodeError and friends
        raise CheckpointError(f"{path}: not an ONNX model ({type(e).__name__}): pass a valid .onnx file") from None
    return {p.key: p.value for p in model.metadata_props}


def _session(path: Path, *, threads: int, providers: list[str] | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph/... types
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: ONNX Runtime cannot load it ({first[:200]}): pass a valid .onnx file") from None


class OnnxRuntime:
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
            raise PoseAppError(f"{arg('precision')} {precision} is not offered by {arg('backend')} onnxruntime on "
                               f"this device: pass {arg('backend')} openvino or torch for bf16, torch for fp16")
        self.path, self.recipe, self.precision = Path(path), recipe, precision
        self.device = "cpu"
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            import onnxruntime as ort

            if "CUDAExecutionProvider" in ort.get_available_providers():
                index = device.split(":")[1] if ":" in device else "0"
                providers = [("CUDAExecutionProvider", {"device_id": int(index)}), "CPUExecutionProvider"]
            else:
                log.warning("onnxruntime has no CUDA provider here (pip install onnxruntime-gpu): running %s on "
                            "the CPU", self.path.name)
        self.session = _session(self.path, threads=threads, providers=providers)  # numpy in and out, any provider
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise CheckpointError(f"{self.path}: it has {len(inputs)} inputs; a pose model takes one (the crops)")
        self._input = inputs[0].name
        self._outputs = [o.name for o in self.session.get_outputs()]
        self.batch = check_graph(str(self.path), recipe, _dims(inputs[0].shape),
                                 [_dims(o.shape) for o in self.session.get_outputs()])
        self._checked = False

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        return self.session.run(self._outputs, {self._input: x})

    def __call__(self, x) -> tuple:
        import torch

        outputs = run_fixed_batch(self._run, np.ascontiguousarray(x.detach().cpu().numpy(), np.float32), self.batch)
        if not self._checked:
            check_outputs(str(self.path), self.recipe, outputs)
            self._checked = True
        return tuple(torch.from_numpy(np.ascontiguousarray(o, np.float32)) for o in outputs)

    def __repr__(self) -> str:
        return f"OnnxRuntime({self.path.name}, precision={self.precision}, providers={self.session.get_providers()})"
