"""Ultralytics ``.pt`` detectors, unpickled with ``torch.load(weights_only=True)`` and an allow-list.

ultralytics' own loader unpickles a ``.pt`` in full: a file whose pickle calls ``os.system`` runs it. Here the
file goes through torch's weights-only unpickler instead, which builds tensors, plain containers and the
globals ``allow_list`` admits, and nothing else:

- model classes: ``nn.Module`` subclasses defined under ``torch.nn.modules`` (Conv2d, BatchNorm2d, SiLU...),
  ``ultralytics.nn.modules`` (Conv, C2f, Detect...) or in ``ultralytics.nn.tasks`` (DetectionModel...), and
  the names older ultralytics versions pickled some of them under (``_RENAMED``);
- data official checkpoints carry beside the model: ultralytics' loss classes (YOLOv10's ``v10DetectLoss``),
  its ``IterableSimpleNamespace`` (training arguments), numpy scalars and dtypes (training metrics), paths;
- ``getattr`` narrowed to a module's ``forward`` (older pose and segment heads pickle ``Detect.forward``).

An admitted class is *built* (``cls.__new__`` and its saved attributes, as a real checkpoint stores every
module), never *called* with arguments of the file's choosing: ``_BuildOnly`` stands in for it in the
unpickler, because calling one runs its ``__init__`` (DetectionModel's parses a model yaml and evaluates its
``activation`` string). A checkpoint needing anything else (``posix.system``, ``builtins.eval``, a class
of another package) is refused before anything is built, naming what it needs (``UnsafeCheckpointError``).

``load_yolo(path, yolo_cls)`` hands the loaded module to ultralytics' ``YOLO`` as a module, so ultralytics
never opens the file itself. ``check_yolo_checkpoint(path)`` is that load without ultralytics' wrapper: a
fresh download is vetted with it before it gets its final name.
"""
from __future__ import annotations

import importlib
import inspect
import pathlib
import pickle
import re
import warnings
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

from poseapp.errors import CheckpointError
from poseapp.models.checkpoint import numpy_safe_globals

_MODEL_TREES = ("torch.nn.modules", "ultralytics.nn.modules", "ultralytics.nn.tasks")
"""Modules (and their submodules) whose nn.Module subclasses a checkpoint may hold."""
_DATA_MODULES = ("ultralytics.utils.loss", "ultralytics.utils.tal")
"""Modules whose classes (loss objects a training run left on the model) a checkpoint may hold as data."""
_RENAMED = {  # a name older ultralytics versions pickled -> where the class lives now
    "ultralytics.nn.modules.block.Silence": "torch.nn.modules.linear.Identity",  # YOLOv9e
    "ultralytics.nn.tasks.YOLOv10DetectionModel": "ultralytics.nn.tasks.DetectionModel",  # YOLOv10
    "ultralytics.utils.loss.v10DetectLoss": "ultralytics.utils.loss.E2EDetectLoss",  # YOLOv10
    "ultralytics.yolo.utils.IterableSimpleNamespace": "ultralytics.utils.IterableSimpleNamespace",  # < 8.0.44
}
_NAMESPACE = "ultralytics.utils.IterableSimpleNamespace"
_PATHS = tuple(f"{m}.{c}" for m in ("pathlib", "pathlib._local") for c in ("PosixPath", "WindowsPath"))
_GETATTR = "builtins.getattr"
_METHODS = frozenset({"forward", "forward_fuse"})
_EXPORT_HINT = "yolo export model=FILE format=onnx"
_REFUSED = "poseapp refuses: "  # starts the unpickling errors the stand-ins below raise


class NotACheckpointError(CheckpointError):
    """A file is not an ultralytics checkpoint; ``reason`` says why without naming the file (``it is ...``)."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"detector model {path}: {reason}: pass a .pt saved by ultralytics (YOLO(...).save(path)), "
                         "an .onnx export or an OpenVINO folder")
        self.reason = reason


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint needs more than the allow-list admits; ``reason`` says what (``it needs posix.system ...``),
    without naming the file."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(
            f"detector model {path} is refused: {reason} (such a file can run code when opened). If it is a "
            f"detector you trust, export it to ONNX where it came from ({_EXPORT_HINT.replace('FILE', path.name)}) "
            f"and pass the .onnx, or pass --trust-checkpoint {path} to unpickle it in full (that runs any code the "
            "file holds)")
        self.reason = reason


class _BuildOnly:
    """Stands in for an admitted class in the unpickler: building one (NEWOBJ: ``cls.__new__(cls)``, then
    BUILD sets its saved attributes) gives a real instance; calling it (REDUCE, which would run ``__init__``
    with the file's arguments) is refused. It compares equal to its class, so torch's BUILD check (the
    instance's type is an allowed global) admits the instances it builds."""

    def __init__(self, cls: type) -> None:
        self.cls = cls
        self.__new__ = lambda _self, *args: cls.__new__(cls)  # looked up on the instance by NEWOBJ

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if args or kwargs:
            raise pickle.UnpicklingError(f"{_REFUSED}it calls {self.cls.__module__}.{self.cls.__qualname__} with "
                                         "arguments, where a checkpoint only rebuilds it from saved attributes")
        return self.cls.__new__(self.cls)  # SimpleNamespace pickles as cls() + state: __init__ never runs

    def __eq__(self, other: object) -> bool:
        return other is self or other is self.cls

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return f"_BuildOnly({self.cls.__module__}.{self.cls.__qualname__})"


def _forward_of(obj: Any, name: Any) -> Any:
    """``getattr`` as a checkpoint may use it: a module class's or instance's ``forward``, nothing else."""
    target = obj.cls if isinstance(obj, _BuildOnly) else obj
    cls = target if isinstance(target, type) else type(target)
    if name in _METHODS and issubclass(cls, nn.Module) and inspect.isfunction(inspect.getattr_static(cls, name, None)):
        method = getattr(cls, name)  # the class's own, never one a saved instance dict put in its place
        return method if target is cls else method.__get__(target, cls)
    raise pickle.UnpicklingError(f"{_REFUSED}it asks for getattr({cls.__qualname__}, {name!r}), where a checkpoint "
                                 f"may only name a module's {' or '.join(sorted(_METHODS))}")


def _path(*parts: Any) -> pathlib.PurePath:
    """A pickled ``pathlib`` path (training arguments hold some), rebuilt as an inert pure path from strings."""
    if not all(isinstance(p, str) for p in parts):
        raise pickle.UnpicklingError(f"{_REFUSED}it builds a path from something other than strings")
    return pathlib.PurePosixPath(*parts)


def _class(name: str) -> type | None:
    """The class ``name`` (``module.Class``) if a checkpoint may hold it, else None. Only modules under
    ``_MODEL_TREES`` / ``_DATA_MODULES`` are ever imported."""
    module, _, attr = _RENAMED.get(name, name).rpartition(".")
    model = any(module == t or module.startswith(t + ".") for t in _MODEL_TREES)
    if not (model or module in _DATA_MODULES or f"{module}.{attr}" == _NAMESPACE):
        return None
    try:
        obj = getattr(importlib.import_module(module), attr, None)
    except ImportError:
        return None
    if not isinstance(obj, type) or obj.__module__ != module:  # defined there, not merely imported there
        return None
    return obj if (not model or issubclass(obj, nn.Module)) else None


def allow_list(names: Iterable[str]) -> tuple[list[Any], list[str]]:
    """The ``torch.serialization.safe_globals`` entries for the globals ``names`` a checkpoint references
    (``get_unsafe_globals_in_checkpoint``), and the names refused (sorted). Pure apart from importing the
    admitted classes' modules."""
    entries: list[Any] = list(numpy_safe_globals())
    refused: list[str] = []
    for name in sorted(set(names)):
        if name == _GETATTR:
            entries.append((_forward_of, name))
        elif name in _PATHS:
            entries.append((_path, name))
        elif (cls := _class(name)) is not None:
            entries.append((_BuildOnly(cls), name))
        elif not any(name == _global_name(e) for e in entries):  # numpy's
            refused.append(name)
    return entries, refused


def _global_name(entry: Any) -> str:
    return entry[1] if isinstance(entry, tuple) else f"{entry.__module__}.{entry.__qualname__}"


def _referenced_globals(path: Path) -> list[str] | None:
    """The globals a ``torch.save`` zip checkpoint's pickle references beyond torch's own safe set (read
    from its opcodes; nothing is built), or None for a file that is not such an archive."""
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception:  # ValueError (not a zip), RuntimeError / BadZipFile (a broken one), OSError
        return None


def _needs(path: Path, names: Iterable[str]) -> UnsafeCheckpointError:
    names = sorted(names)
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    return UnsafeCheckpointError(path, f"it needs {shown}, which a model checkpoint does not")


def check_yolo_checkpoint(path: str | Path) -> None:
    """Raise unless ``path`` is a ``torch.save`` zip checkpoint (what ultralytics writes) that loads through the
    allow-list into a detector module: NotACheckpointError, or UnsafeCheckpointError when it needs more than
    the list. Its globals are vetted from its opcodes before anything is built."""
    path = Path(path)
    if _referenced_globals(path) is None:
        raise NotACheckpointError(path, "it is not a PyTorch checkpoint (a torch.save zip archive, as ultralytics "
                                        "writes)")
    module_from_checkpoint(read_yolo_checkpoint(path), path)


def read_yolo_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict at ``path``, unpickled weights-only with the allow-list.

    Raises UnsafeCheckpointError for a file that needs more than it admits (zip checkpoints are vetted from
    their opcodes first; any other pickle is refused by the unpickler at the first such global), and
    NotACheckpointError for a file that is not a readable checkpoint dict.
    """
    path = Path(path)
    names = _referenced_globals(path)
    entries, refused = allow_list(names or ())
    if refused:
        raise _needs(path, refused)
    try:
        with torch.serialization.safe_globals(entries), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Detected pickle protocol 4 ...": the error, if any, says enough
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # zip, pickle and weights-only errors of every kind
        why = _unpickler_reason(e)
        needed = re.search(r"GLOBAL (\S+?)(?: was not| whose|$)", why)
        if needed:
            raise _needs(path, [needed.group(1)]) from e
        if _REFUSED in why:  # a _BuildOnly, _forward_of or _path refusal
            raise UnsafeCheckpointError(path, why.split(_REFUSED, 1)[1]) from e
        if "TorchScript" in why:
            why = "a TorchScript archive: name it .torchscript"
        raise NotACheckpointError(path, f"it is not a checkpoint ultralytics wrote ({why})") from e
    if not isinstance(ckpt, dict):
        raise NotACheckpointError(path, f"it holds a {type(ckpt).__name__}, not an ultralytics checkpoint dict")
    return ckpt


def _unpickler_reason(error: Exception) -> str:
    """torch.load's error in one line, without its boilerplate about ``weights_only``."""
    text = " ".join(str(error).split())
    text = re.sub(r"^Weights only load failed\..*?trusted source\.\s*", "", text)
    text = re.sub(r"\s*Check the documentation of torch\.load.*$", "", text)
    text = text.removeprefix("Please file an issue with the following so that we can make `weights_only=True` "
                             "compatible with your use case: ").removeprefix("WeightsUnpickler error: ")
    return text[:200] or type(error).__name__


def module_from_checkpoint(ckpt: dict[str, Any], path: str | Path) -> nn.Module:
    """The detector module in ``ckpt`` (its ``ema``, else its ``model``), FP32, in eval mode, with the
    attributes ultralytics' predictor reads (``task``, ``stride``, ``args``, ``pt_path``)."""
    from ultralytics.cfg import DEFAULT_CFG_DICT
    from ultralytics.nn.tasks import guess_model_task

    module = next((m for m in (ckpt.get("ema"), ckpt.get("model")) if isinstance(m, nn.Module)), None)
    if module is None:
        raise NotACheckpointError(Path(path), "it holds no model (no 'model' or 'ema' module)")
    module = module.float()
    train_args = ckpt.get("train_args")
    task = train_args.get("task") if isinstance(train_args, dict) else None
    # The file's training arguments are not carried over (a data-set path, a save folder): only the task.
    module.args = {**DEFAULT_CFG_DICT, "task": task if isinstance(task, str) else guess_model_task(module)}
    module.task = getattr(module, "task", None) or module.args["task"]
    module.pt_path = str(path)
    if not hasattr(module, "stride"):
        module.stride = torch.tensor([32.0])
    for m in module.modules():  # ultralytics' own load does the same
        if hasattr(m, "inplace"):
            m.inplace = True
        elif isinstance(m, nn.Upsample) and not hasattr(m, "recompute_scale_factor"):
            m.recompute_scale_factor = None
    return module.eval()


def load_yolo(path: str | Path, yolo_cls: type) -> Any:
    """A ``yolo_cls`` (ultralytics' ``YOLO``) around the module of the checkpoint ``path``, read with
    ``read_yolo_checkpoint``: ultralytics is given the module, never the file."""
    path = Path(path)
    module = module_from_checkpoint(read_yolo_checkpoint(path), path)

    class _Loaded(yolo_cls):  # type: ignore[misc, valid-type]
        def _load(self, weights: str, task: str | None = None) -> None:  # Model._load, minus torch.load
            self.model, self.ckpt, self.task = module, {}, module.task
            self.overrides = {"task": module.task, "model": weights}
            self.ckpt_path = self.model_name = weights

    return _Loaded(str(path))
