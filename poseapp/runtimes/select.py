"""Choosing and building the runtime for a model: which backends can run it (a .pth on any, an .onnx on ONNX
Runtime and OpenVINO, an OpenVINO .xml on OpenVINO), at which precision, and ``auto``'s measured pick."""
from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Callable

from poseapp.errors import PoseAppError, arg
from poseapp.runtimes.base import BACKENDS, GRAPH_SUFFIXES, Runtime, check_choice, check_precision, default_threads
from poseapp.zoo import Recipe

log = logging.getLogger(__name__)

_PACKAGE = {"onnxruntime": "onnxruntime", "openvino": "openvino"}
_BF16 = ("torch", "openvino")


def installed(backend: str) -> bool:
    """Whether a backend's package can be imported here (torch always can)."""
    package = _PACKAGE.get(backend)
    return package is None or importlib.util.find_spec(package) is not None


def backends_for(path: Path | None) -> tuple[str, ...]:
    """The backends that can run a model file: a checkpoint (or a zoo model) all three, an .onnx graph
    ONNX Runtime and OpenVINO, an .xml IR OpenVINO."""
    suffix = path.suffix.lower() if path is not None else ""
    if suffix == ".onnx":
        return ("onnxruntime", "openvino")
    if suffix == ".xml":
        return ("openvino",)
    return ("torch", "onnxruntime", "openvino")


def create_runtime(recipe: Recipe, *, checkpoint: Path | None, network: Callable[[], object],
                   backend: str = "auto", precision: str = "fp32", device: str = "cpu", threads: int | None = None) -> Runtime:
    """The runtime for a model.

    Args:
        recipe: what the model expects and returns (a graph's shapes are checked against it).
        checkpoint: the .pth checkpoint (exported to ONNX once for ONNX Runtime/OpenVINO), or an .onnx/.xml
            model file.
        network: () -> the loaded torch network for a checkpoint (called only when torch runs it or an export
            is needed).
        backend: ``auto``, ``torch``, ``onnxruntime`` or ``openvino``.
        precision: ``fp32``, ``bf16``, ``fp16`` (CUDA) (checked against the device first).
        device: the resolved torch device.
        threads: CPU threads for the backend (None: torch keeps its own setting; ONNX Runtime and OpenVINO
            take the CPUs this process may use).

    Raises:
        PoseAppError: naming ``backend``/``precision`` for a combination that cannot run here.
    """
    backend = check_choice(backend, BACKENDS, "backend")
    precision = check_precision(precision, device)
    possible = backends_for(checkpoint)
    if backend != "auto":
        if backend not in possible:
            kind = "an OpenVINO IR" if checkpoint.suffix.lower() == ".xml" else "an ONNX graph"
            raise PoseAppError(f"{arg('backend')} {backend} cannot run {checkpoint.name}: {kind} runs on "
                               f"{' or '.join(possible)} (a .pth checkpoint runs on torch)")
        if not installed(backend):
            raise PoseAppError(f"{arg('backend')} {backend}: the {_PACKAGE[backend]} package is not installed "
                               f"(pip install {_PACKAGE[backend]}, or pass {arg('backend')} auto)")
        return _factory(backend, recipe, checkpoint, network, precision, device, threads)()
    candidates = [b for b in possible if installed(b)]
    if precision == "bf16":
        candidates = [b for b in candidates if b in _BF16]
    if device.startswith("cuda") or precision == "fp16":
        candidates = [b for b in candidates if b != "openvino"][:1]  # torch on CUDA; a graph: ONNX Runtime
    if not candidates:
        raise PoseAppError(f"{arg('backend')} auto: no backend here runs {checkpoint.name} at {precision} on "
                           f"{device} (bf16 on the CPU: torch or openvino; on CUDA: torch)")
    factories = {b: _factory(b, recipe, checkpoint, network, precision, device, threads) for b in candidates}
    if len(factories) == 1:
        log.info("backend auto: %s (the one installed backend that runs %s at %s on %s)", candidates[0],
                 checkpoint.name, precision, device)
        return next(iter(factories.values()))()
    from poseapp.runtimes.auto import choose, probe_key

    shape = (f"{recipe.arch}:{recipe.num_keypoints}:{recipe.input_size[0]}x{recipe.input_size[1]}"
             if checkpoint is None or checkpoint.suffix.lower() not in GRAPH_SUFFIXES else _file_id(checkpoint))
    key = probe_key(shape, threads=threads or default_threads(), precision=precision, device=device)
    return choose(factories, key, recipe.input_size)


def _file_id(path: Path) -> str:
    from poseapp.hub import sha256_of

    return f"{path.name}:{sha256_of(path)[:16]}"


def _factory(backend: str, recipe: Recipe, checkpoint: Path | None, network: Callable[[], object], precision: str,
             device: str, threads: int | None) -> Callable[[], Runtime]:
    cpus = threads or default_threads()
    graph = checkpoint is not None and checkpoint.suffix.lower() in GRAPH_SUFFIXES

    def onnx_file() -> Path:
        if graph:
            return checkpoint
        from poseapp.runtimes.export import cached_onnx

        return cached_onnx(recipe, checkpoint, network)

    if backend == "torch":
        def make() -> Runtime:
            from poseapp.runtimes.torch_runtime import TorchRuntime

            return TorchRuntime(network(), device=device, precision=precision, threads=threads)
    elif backend == "onnxruntime":
        def make() -> Runtime:
            from poseapp.runtimes.onnx_runtime import OnnxRuntime

            return OnnxRuntime(onnx_file(), recipe, precision=precision, threads=cpus, device=device)
    else:
        def make() -> Runtime:
            from poseapp.runtimes.openvino_runtime import OpenVinoRuntime

            return OpenVinoRuntime(onnx_file(), recipe, precision=precision, threads=cpus, device=device)
    return make
