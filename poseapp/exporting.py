"""``python infer.py export``: a zoo model or checkpoint as an ONNX graph or OpenVINO IR that carries its recipe
(``--pose-model FILE`` then runs it with no ``--pose-arch``), checked against the PyTorch network it came from."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from poseapp.errors import OutputError, PoseAppError, arg
from poseapp.zoo import Recipe

log = logging.getLogger(__name__)

FORMATS = {"onnx": ".onnx", "openvino": ".xml"}
EXPORT_PRECISIONS = ("fp32", "bf16")
MAX_DIFFERENCE = 1e-4
"""The most an export's fp32 outputs may differ from the PyTorch network's, relative to the largest output."""


@dataclass(frozen=True)
class Exported:
    """What ``export_model`` wrote.

    Attributes:
        path: the .onnx file, or the OpenVINO .xml (its .bin beside it).
        recipe: the recipe written into it.
        precision: the precision recorded in it (what ``create_model`` runs it at unless told otherwise).
        max_difference: the largest difference between its fp32 outputs and the PyTorch network's on a random
            batch, relative to the largest output (float noise: ~1e-6).
    """

    path: Path
    recipe: Recipe
    precision: str
    max_difference: float


def export_model(model: str | Path, *, arch: str | None = None, format: str | None = None,
                 out: str | Path | None = None, precision: str = "fp32", offline: bool | None = None) -> Exported:
    """Export a zoo model (fetched on first use) or a checkpoint.

    Args:
        model, arch: as ``create_model`` takes them (a .pth checkpoint, or a zoo name).
        format: ``onnx`` or ``openvino``; None: from ``out``'s suffix (``.xml``: openvino), else onnx.
        out: the file to write (``.onnx`` / ``.xml``), or a folder; default ``<recipe name>.onnx|.xml`` here.
        precision: ``fp32``, or ``bf16``: recorded in the file, so OpenVINO (and torch) run it in bf16 by
            default; the weights stay fp32 either way.
        offline: no download; None: as ``POSEAPP_OFFLINE`` says.

    Raises:
        PoseAppError: naming the argument that was wrong.
    """
    from poseapp.create import load_network, local_file, resolve_model
    from poseapp.runtimes.base import GRAPH_SUFFIXES
    from poseapp.runtimes.base import check_choice

    if format is None:
        format = "openvino" if out is not None and Path(out).suffix.lower() == ".xml" else "onnx"
    format = check_choice(format, tuple(FORMATS), "format")
    precision = check_choice(precision, ("fp32", "bf16", "fp16"), "precision")
    if precision not in EXPORT_PRECISIONS:
        raise PoseAppError(f"{arg('precision')} fp16 is not an export precision (fp16 runs through {arg('backend')} "
                           f"torch on CUDA): export fp32 or bf16")
    resolved = resolve_model(model, arch)
    if resolved.path is not None and resolved.path.suffix.lower() in GRAPH_SUFFIXES:
        raise PoseAppError(f"{arg('model')} {resolved.path.name} is an exported model already: export a zoo name or "
                           f"a .pth checkpoint")
    target = _target(out, resolved.recipe, format)
    checkpoint = local_file(resolved, offline)
    network = load_network(resolved.recipe, checkpoint)
    from poseapp.runtimes.export import write_onnx, write_openvino

    if format == "onnx":
        write_onnx(network, resolved.recipe, target, precision)
    else:
        onnx_tmp = target.with_name(f".{target.stem}.{os.getpid()}.tmp.onnx")
        try:
            write_onnx(network, resolved.recipe, onnx_tmp, precision)
            write_openvino(onnx_tmp, resolved.recipe, target, precision)
        finally:
            onnx_tmp.unlink(missing_ok=True)
    difference = _difference(network, target, resolved.recipe)
    if difference > MAX_DIFFERENCE:
        raise PoseAppError(f"the export {target} differs from the PyTorch network by {difference:.1e} (relative; "
                           f"float noise is ~1e-6): it is left there for inspection, but do not use it")
    log.info("exported %s to %s (outputs within %.1e of the PyTorch network's)", resolved.recipe.name, target,
             difference)
    return Exported(target, resolved.recipe, precision, difference)


def _target(out: str | Path | None, recipe: Recipe, format: str) -> Path:
    suffix = FORMATS[format]
    if out is None:
        return Path(f"{recipe.name}{suffix}")
    path = Path(out).expanduser()
    if path.is_dir() or str(out).endswith(("/", "\\")) or not path.suffix:  # a folder (made if need be)
        return path / f"{recipe.name}{suffix}"
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise OutputError(f"{arg('out')} {path}: {parent} is a file, not a folder")
    if path.suffix.lower() != suffix:
        kind = {"onnx": "an ONNX", "openvino": "an OpenVINO"}[format]
        raise OutputError(f"{arg('out')} {path}: {kind} export is a {suffix} file (pass NAME{suffix} or a folder)")
    return path


def _difference(network, path: Path, recipe: Recipe) -> float:
    """Largest |exported - torch| / max |torch| over a seeded random batch, at fp32: 3 crops, so that a batch
    size frozen into the graph by the trace (it ran at 2) shows."""
    import numpy as np
    import torch

    from poseapp.runtimes.base import as_outputs

    w, h = recipe.input_size
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((3, 3, h, w), dtype=np.float32))
    if path.suffix.lower() == ".xml":
        from poseapp.runtimes.openvino_runtime import OpenVinoRuntime as Graph
    else:
        from poseapp.runtimes.onnx_runtime import OnnxRuntime as Graph
    from poseapp.runtimes.base import default_threads

    exported = Graph(path, recipe, precision="fp32", threads=default_threads())(x)
    with torch.inference_mode():
        reference = as_outputs(network(x))
    return max(float((a - b).abs().max() / b.abs().max().clamp_min(1e-12)) for a, b in zip(exported, reference))
