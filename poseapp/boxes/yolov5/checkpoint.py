"""Classic ultralytics/yolov5 checkpoints (v5.0-v7.0: a pickled ``models.yolo.Model``), read without running
any of their code.

The file goes through ``torch.load(weights_only=True)`` with yolov5's class names mapped to inert stand-ins
(``_Part``: no methods, built from its saved attributes, never called) and torch's own layer classes admitted
as build-only (``yolo_checkpoint.allow_list``'s rule). A file that needs any other global is refused before
anything is built. From what was built, only data is taken: the model's yaml dict (its architecture, which
``network.build_yolov5`` turns into poseapp's modules), its class names, and the tensors of every module's
``_parameters`` and ``_buffers`` under their state-dict keys. Both layouts load: v5.0 keeps
``Detect.anchor_grid`` as a buffer, v7.0 as a list (the network drops it either way and recomputes it).
"""
from __future__ import annotations

import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from poseapp.boxes.yolo_checkpoint import NotACheckpointError, UnsafeCheckpointError, allow_list
from poseapp.models.checkpoint import archive_problem, only_safe_globals

YOLOV5_CLASSES = {
    "models.yolo": ("Model", "DetectionModel", "Detect"),
    "models.common": ("Conv", "Focus", "Bottleneck", "BottleneckCSP", "C3", "SPP", "SPPF", "Concat"),
}
"""The yolov5 classes a v5.0-v7.0 detector checkpoint pickles (the layer types ``network`` builds)."""
_NAMES = {f"{module}.{name}" for module, names in YOLOV5_CLASSES.items() for name in names}
_MAX_DEPTH = 16


class _Part:
    """Stands in for a yolov5 class while a checkpoint is unpickled: it has no code, holds what BUILD sets."""

    yolov5_name = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # REDUCE would call it: refused
        raise pickle.UnpicklingError(f"poseapp refuses: it calls {self.yolov5_name} with arguments, where a "
                                     "checkpoint only rebuilds it from saved attributes")

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
            raise pickle.UnpicklingError(f"poseapp refuses: its {self.yolov5_name} state is not a dict of names")
        self.__dict__.update(state)


def _stand_in(name: str) -> type:
    return type(name.rsplit(".", 1)[1], (_Part,), {"yolov5_name": name, "__module__": "poseapp.yolov5_stand_in"})


@dataclass(frozen=True)
class YoloV5Checkpoint:
    """What a classic yolov5 checkpoint holds that poseapp uses: its architecture, weights and class names."""

    yaml: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    names: list[str]


def is_yolov5_checkpoint(names: list[str]) -> bool:
    """Whether a checkpoint whose pickle references ``names`` is a classic yolov5 one (its model class)."""
    return any(n in ("models.yolo.Model", "models.yolo.DetectionModel") for n in names)


def read_yolov5_checkpoint(path: str | Path, names: list[str] | None = None) -> YoloV5Checkpoint:
    """The architecture, weights and class names of the yolov5 checkpoint at ``path`` (``names``: the
    globals its pickle references, when already read).

    Raises:
        NotACheckpointError: not a torch.save archive, or not a yolov5 detector checkpoint.
        UnsafeCheckpointError: it needs a global beyond yolov5's classes and torch's layers, or calls one.
    """
    path = Path(path)
    if names is None:
        try:
            with only_safe_globals([]):
                names = list(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
        except Exception:  # not a zip, a broken one, unreadable
            raise NotACheckpointError(path, "it is not a PyTorch checkpoint (a torch.save zip archive)") from None
    if (problem := archive_problem(path)) is not None:
        raise NotACheckpointError(path, problem)
    ours = [n for n in names if n in _NAMES]
    entries, refused = allow_list([n for n in names if n not in _NAMES])
    if refused:
        shown = ", ".join(sorted(refused)[:4])
        raise UnsafeCheckpointError(path, f"it needs {shown}, which a yolov5 checkpoint does not")
    entries += [(_stand_in(n), n) for n in ours]
    try:
        with only_safe_globals(entries), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        why = " ".join(str(e).split())
        if "poseapp refuses: " in why:
            raise UnsafeCheckpointError(path, why.split("poseapp refuses: ", 1)[1][:200]) from e
        raise NotACheckpointError(path, f"it is not a yolov5 checkpoint ({why[:200]})") from e
    return _contents(ckpt, path)


def _contents(ckpt: Any, path: Path) -> YoloV5Checkpoint:
    model = (ckpt.get("ema") or ckpt.get("model")) if isinstance(ckpt, dict) else None
    if not (isinstance(model, _Part) and model.yolov5_name in ("models.yolo.Model", "models.yolo.DetectionModel")):
        raise NotACheckpointError(path, "it holds no yolov5 Model under 'model' (a yolov5 train.py checkpoint does)")
    state = vars(model)
    yaml, names = state.get("yaml"), state.get("names")
    if not isinstance(yaml, dict):
        raise NotACheckpointError(path, "its model has no architecture description (yaml dict)")
    if isinstance(names, dict):
        names = [names[k] for k in sorted(names)]
    if not (isinstance(names, (list, tuple)) and all(isinstance(n, str) for n in names)):
        raise NotACheckpointError(path, "its model's class names are not a list of strings")
    tensors: dict[str, torch.Tensor] = {}
    _collect(model, "", tensors, 0, path)
    return YoloV5Checkpoint(yaml, tensors, list(names))


def _collect(module: Any, prefix: str, out: dict[str, torch.Tensor], depth: int, path: Path) -> None:
    """The tensors of ``module`` and its children, under state-dict keys (non-persistent buffers left out)."""
    if depth > _MAX_DEPTH:
        raise NotACheckpointError(path, "its modules nest deeper than any yolov5 model's")
    state = vars(module)
    skip = state.get("_non_persistent_buffers_set") or set()
    for kind in ("_parameters", "_buffers"):
        for name, value in (state.get(kind) or {}).items():
            if value is not None and name not in skip:
                if not isinstance(value, torch.Tensor):
                    raise NotACheckpointError(path, f"{prefix}{name} is a {type(value).__name__}, not a tensor")
                out[prefix + name] = value.detach().float() if value.is_floating_point() else value.detach()
    children = state.get("_modules") or {}
    if not isinstance(children, dict):
        raise NotACheckpointError(path, f"{prefix or 'the model'} has no module table")
    for name, child in children.items():
        if child is not None:
            if not hasattr(child, "__dict__"):
                raise NotACheckpointError(path, f"{prefix}{name} is a {type(child).__name__}, not a module")
            _collect(child, f"{prefix}{name}.", out, depth + 1, path)
