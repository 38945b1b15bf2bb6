"""What every runtime is: a pose network behind one call, normalised float32 crops in, raw outputs out.

A runtime never crops, normalises, flips or decodes: the estimator does that, the same for every backend,
so a backend can only change the network's arithmetic (and a parity test through it shows by how much).
"""
from __future__ import annotations

import os
from functools import lru_cache
from typing import Protocol

from poseapp.errors import PoseAppError, arg


def as_outputs(out) -> tuple:
    """A network's output as a tuple: a tensor (heatmaps, coordinates) becomes a 1-tuple, SimCC's (x, y)
    pair stays a pair."""
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


BACKENDS = ("auto", "torch", "onnxruntime", "openvino")
PRECISIONS = ("fp32", "bf16", "fp16")
PRECISION_CHOICES = (*PRECISIONS, "int8")  # what the command line accepts: int8 is refused with its reason
GRAPH_SUFFIXES = (".onnx", ".xml")  # model files that hold a graph (ONNX, OpenVINO IR), not a torch checkpoint
INT8_REASON = ("int8 is not offered yet (post-training quantisation needs a calibration set and a measured "
               "accuracy cost)")


def reason(error: BaseException, limit: int = 200) -> str:
    """One line saying why a runtime failed: the last non-empty line of its message (ONNX Runtime and OpenVINO
    write several, the cause last), else the exception's type."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[-1] if lines else type(error).__name__)[:limit]


def require(package: str):
    """``import package``, or a one-line PoseAppError saying how to install it."""
    import importlib

    try:
        return importlib.import_module(package)
    except ImportError as e:
        raise PoseAppError(f"the {package} package is not installed ({e}): pip install -r requirements.txt") from None


class Runtime(Protocol):
    """A pose network ready to run.

    Attributes:
        backend: ``torch``, ``onnxruntime`` or ``openvino``.
        precision: ``fp32``, ``bf16`` or ``fp16``: the arithmetic it runs in.
        device: the torch device the input batch must be on (``cpu`` for ONNX Runtime and OpenVINO).
    """

    backend: str
    precision: str
    device: str

    def __call__(self, x):
        """(B, 3, h, w) float32 torch tensor on ``device`` -> tuple of float32 tensors, one per network output
        ((B, K, H, W) heatmaps; (B, K, D) coordinates; SimCC's (B, K, Wx), (B, K, Wy)), on ``device``."""


def default_threads() -> int:
    """The CPUs this process may use (its affinity mask, which containers and ``taskset`` set), else the
    machine's count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def check_threads(threads: int | None) -> int:
    if threads is None:
        return default_threads()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise PoseAppError(f"{arg('threads')} {threads!r}: give a whole number of CPU threads, 1 or more")
    if threads > default_threads():
        import logging

        logging.getLogger(__name__).warning("threads %d is more than the %d CPU(s) this process may use: the "
                                            "threads will contend for them (slower, not faster)", threads,
                                            default_threads())
    return threads


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux reports them (empty elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


@lru_cache(maxsize=1)
def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``; ``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware: AMX-BF16 tiles or AVX512-BF16 dot products."""
    return bool({"amx_bf16", "avx512_bf16"} & cpu_flags())


def check_choice(value: str, choices: tuple[str, ...], name: str) -> str:
    text = str(value).strip().lower()
    if name == "precision" and text == "int8":
        raise PoseAppError(f"{arg('precision')} {INT8_REASON}: {arg('precision')} bf16 is the fast one")
    if text not in choices:
        raise PoseAppError(f"{arg(name)} {value}: pass one of {', '.join(choices)}")
    return text


def check_precision(precision: str, device: str) -> str:
    """The precision, checked against the device: bf16 needs a CPU with AMX-BF16/AVX512-BF16 (or CUDA),
    fp16 a CUDA device. int8 is not offered (yet): refused with the reason."""
    precision = check_choice(precision, PRECISIONS, "precision")
    cuda = device.startswith("cuda")
    if precision == "bf16" and not cuda and not native_bf16():
        raise PoseAppError(f"{arg('precision')} bf16: this CPU ({cpu_name()}) has neither AMX-BF16 nor AVX512-BF16, "
                           f"so bf16 would be emulated and slower than fp32 (use {arg('precision')} fp32)")
    if precision == "fp16" and not cuda:
        raise PoseAppError(f"{arg('precision')} fp16 needs a CUDA device (pass {arg('device')} cuda; on a CPU use "
                           f"{arg('precision')} bf16 where it has AMX/AVX512-BF16, else fp32)")
    return precision
