"""Ultralytics ``.pt`` detectors, unpickled with ``torch.load(weights_only=True)`` and an allow-list.

ultralytics' own loader unpickles a ``.pt`` in full: a file whose pickle calls ``os.system`` runs it. Here the
file goes through torch's weights-only unpickler instead, which builds tensors, plain containers, torch's own
safe types and the globals ``allow_list`` admits, and nothing else:

- model classes: ``nn.Module`` subclasses defined under ``torch.nn.modules`` (Conv2d, BatchNorm2d, SiLU...),
  ``ultralytics.nn.modules`` (Conv, C2f, Detect...) or in ``ultralytics.nn.tasks`` (DetectionModel...), and
  the names older ultralytics versions pickled some of them under (``_RENAMED``);
- data official checkpoints carry beside the model: ultralytics' loss classes (YOLOv10's ``v10DetectLoss``),
  its ``IterableSimpleNamespace`` (training arguments), numpy scalars and dtypes (training metrics), paths
  (rebuilt as inert pure paths).

An admitted class is *built* (``cls.__new__`` and its saved attributes, as a real checkpoint stores every
module), never *called* with arguments of the file's choosing: ``_BuildOnly`` stands in for it in the
unpickler, because calling one runs its ``__init__`` (DetectionModel's parses a model yaml and evaluates its
``activation`` string). No function of those classes is reachable (``getattr`` is not admitted). A file that
needs anything else (``posix.system``, ``builtins.eval``, a class of another package) is refused before
anything is built, naming what it needs (``UnsafeCheckpointError``); so is one that is not a ``torch.save``
zip archive (``NotACheckpointError``: ultralytics writes nothing else).

The unpickled object is then audited (``_audit``): its model must be a DetectionModel (or a segment, pose or
OBB model: they give boxes too) whose every module was initialised, with no hooks and no stand-in left in it.

``load_yolo(path, yolo_cls)`` hands the module to ultralytics' ``YOLO`` as a module, under an inert name, so
ultralytics has no file to open. ``check_yolo_checkpoint(path)`` is the same load and audit without the
wrapper: a fresh download is vetted with it before it gets its final name. ``load_trusted`` is the
``--trust-checkpoint`` path: ultralytics' own full unpickling, by the user's explicit choice.
"""
from __future__ import annotations

import importlib
import pathlib
import pickle
import re
import shlex
import warnings
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

from poseapp.boxes.base import DetectorError
from poseapp.errors import CheckpointError
from poseapp.models.checkpoint import archive_problem, numpy_safe_globals, only_safe_globals

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
STRIDES = frozenset({8, 16, 32, 64, 128})
"""The strides of detectors (8.0 == 8: a tensor's floats compare equal)."""
BOX_TASKS = ("detect", "segment", "pose", "obb")
"""The ultralytics tasks whose models give boxes."""
_METHODS = frozenset({"forward", "forward_fuse", "_compiled_call_impl", "_call_impl"})
"""Names of a module's methods: a saved instance dict setting one would replace the class's code."""
_PRELOADED = "poseapp-preloaded-module"  # the name ultralytics is given for a module it must not load by name
_EXPORT_HINT = "yolo export model=FILE format=onnx"
_REFUSED = "poseapp refuses: "  # starts the unpickling errors the stand-ins below raise


class NotACheckpointError(DetectorError, CheckpointError):
    """A file is not an ultralytics checkpoint; ``reason`` says why without naming the file (``it is ...``)."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"detector model {path}: {reason}: pass a .pt saved by ultralytics (YOLO(...).save(path)), "
                         "an .onnx export or an OpenVINO folder")
        self.reason = reason


class UnsafeCheckpointError(DetectorError, CheckpointError):
    """A checkpoint needs more than the allow-list admits; ``reason`` says what (``it needs posix.system ...``),
    without naming the file."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(
            f"detector model {path} is refused: {reason} (such a file can run code when opened). If it is a "
            f"detector you trust, export it to ONNX where it came from ({_EXPORT_HINT.replace('FILE', path.name)}) "
            f"and pass the .onnx, or pass --trust-checkpoint {shlex.quote(str(path))} to unpickle it in full (that "
            "runs any code the file holds)")
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
        if name in _PATHS:
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
        with only_safe_globals([]):
            return list(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception:  # ValueError (not a zip), RuntimeError / BadZipFile (a broken one), OSError
        return None


def _needs(path: Path, names: Iterable[str]) -> UnsafeCheckpointError:
    names = sorted(names)
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    return UnsafeCheckpointError(path, f"it needs {shown}, which a model checkpoint does not")


def check_yolo_checkpoint(path: str | Path) -> None:
    """Raise unless ``path`` is a ``torch.save`` zip checkpoint (what ultralytics writes) that loads through the
    allow-list into a detector module that passes the audit: NotACheckpointError, or UnsafeCheckpointError
    when it needs or holds more than a checkpoint does. Its globals are vetted from its opcodes first."""
    path = Path(path)
    module_from_checkpoint(read_yolo_checkpoint(path), path)


def read_yolo_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict at ``path``, unpickled weights-only with the allow-list.

    Raises NotACheckpointError for a file that is not a ``torch.save`` zip archive of a dict, and
    UnsafeCheckpointError for one whose pickle needs a global beyond the allow-list (vetted from its opcodes,
    before anything is built) or calls an admitted class.
    """
    path = Path(path)
    names = _referenced_globals(path)
    if names is None:
        raise NotACheckpointError(path, "it is not a PyTorch checkpoint (a torch.save zip archive, as ultralytics "
                                        "writes)")
    if (problem := archive_problem(path)) is not None:
        raise NotACheckpointError(path, problem)
    entries, refused = allow_list(names)
    if refused:
        raise _needs(path, refused)
    try:
        with only_safe_globals(entries), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4": the error, if any, says enough
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # zip, pickle and weights-only errors of every kind
        why = _unpickler_reason(e)
        needed = re.search(r"GLOBAL (\S+?)(?: was not| whose|$)", why)
        if needed:  # (a global the opcode scan missed: refused all the same)
            raise _needs(path, [needed.group(1)]) from e
        if _REFUSED in why:  # a _BuildOnly or _path refusal
            raise UnsafeCheckpointError(path, why.split(_REFUSED, 1)[1]) from e
        if "TorchScript" in why:
            why = "a TorchScript archive"
        raise NotACheckpointError(path, f"it is not a checkpoint ultralytics wrote ({why[:200]})") from e
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
    return text or type(error).__name__


def _audit(root: Any) -> str | None:
    """What a real checkpoint never holds, found anywhere in the unpickled object ``root`` (None: nothing):
    a stand-in (``_BuildOnly``: the file put the class itself where an instance belongs), a module whose
    ``nn.Module.__init__`` state is missing, or a hook (code to run at inference)."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (torch.Tensor, str, bytes, int, float, bool, type(None))):
            continue
        seen.add(id(obj))
        if isinstance(obj, _BuildOnly) or (isinstance(obj, type) and issubclass(obj, nn.Module)):
            cls = obj.cls if isinstance(obj, _BuildOnly) else obj
            return f"it puts the class {cls.__module__}.{cls.__qualname__} where a module belongs"
        if isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            stack.extend(obj)
        elif isinstance(obj, nn.Module):
            state = vars(obj)
            if not all(k in state for k in ("_modules", "_parameters", "_buffers")):
                return f"it holds a {type(obj).__name__} that was never initialised"
            hooks = [k for k, v in state.items() if "hooks" in k and v]
            if hooks:
                return f"it installs hooks ({', '.join(sorted(hooks))}) on a {type(obj).__name__}"
            planted = sorted(k for k in state if not isinstance(k, str) or k.startswith("__") or k in _METHODS)
            if planted:
                return f"it sets {', '.join(map(str, planted))} on a {type(obj).__name__}, which only its class defines"
            stack.extend(state.values())
        elif hasattr(obj, "__dict__") and not isinstance(obj, type):  # (another class: torch's safe set)
            stack.extend(vars(obj).values())
    return None


def _task_of(module: nn.Module) -> str:
    """The ultralytics task of a model that gives boxes (detect, segment, pose, obb), by its class."""
    from ultralytics.nn import tasks

    for name, task in (("OBBModel", "obb"), ("PoseModel", "pose"), ("SegmentationModel", "segment")):
        cls = getattr(tasks, name, None)
        if cls is not None and isinstance(module, cls):
            return task
    return "detect"


def module_from_checkpoint(ckpt: dict[str, Any], path: str | Path, *, audit: bool = True) -> nn.Module:
    """The detector module in ``ckpt`` (its ``ema``, else its ``model``), FP32, in eval mode, with the
    attributes ultralytics' predictor reads (``task`` from its class, ``stride``, ``args``).

    Raises NotACheckpointError unless it is an ultralytics DetectionModel (segment, pose and OBB models are
    ones; YOLO-World and YOLOE, whose text models load more files, are not taken), and, with ``audit``,
    UnsafeCheckpointError for a checkpoint holding what no real one does (``_audit``)."""
    from ultralytics.cfg import DEFAULT_CFG_DICT
    from ultralytics.nn import tasks

    path = Path(path)
    module = next((m for m in (ckpt.get("ema"), ckpt.get("model")) if isinstance(m, nn.Module)), None)
    if module is None:
        raise NotACheckpointError(path, "it holds no model (no 'model' or 'ema' module)")
    text_models = tuple(getattr(tasks, n) for n in ("WorldModel", "YOLOEModel") if hasattr(tasks, n))
    if not isinstance(module, tasks.DetectionModel) or isinstance(module, text_models):
        raise NotACheckpointError(path, f"its model is a {type(module).__name__}, not an ultralytics detector "
                                        "(DetectionModel, or a segment, pose or OBB model)")
    if audit and (found := _audit(ckpt)) is not None:
        raise UnsafeCheckpointError(path, found)
    module = module.float()
    task = _task_of(module)
    module.args = {**DEFAULT_CFG_DICT, "task": task}  # the file's training arguments are not carried over
    module.task = task
    module.pt_path = _PRELOADED
    stride = getattr(module, "stride", None)
    if not isinstance(stride, torch.Tensor) or stride.ndim != 1 or not 1 <= stride.numel() <= 8 or not set(
            stride.tolist()) <= STRIDES:  # ultralytics rounds the input size up to it: 16000 would be gigabytes
        raise NotACheckpointError(path, f"its stride {stride!r} is not a detector's (1-D, values in "
                                        f"{sorted(STRIDES)})"[:200])
    for m in module.modules():  # ultralytics' own load does the same
        if hasattr(m, "inplace"):
            m.inplace = True
        elif isinstance(m, nn.Upsample) and not hasattr(m, "recompute_scale_factor"):
            m.recompute_scale_factor = None
    return module.eval()


def _wrap(module: nn.Module, yolo_cls: type) -> Any:
    """A ``yolo_cls`` (ultralytics' ``YOLO``) around ``module``, named ``_PRELOADED``: ultralytics has no file
    to load, and no name to build a model from."""

    class PreloadedYOLO(yolo_cls):  # type: ignore[misc, valid-type]
        def _load(self, weights: str, task: str | None = None) -> None:  # Model._load, minus the loading
            self.model, self.ckpt, self.task = module, {}, module.task
            self.overrides = {"task": module.task, "model": _PRELOADED}
            self.ckpt_path = self.model_name = _PRELOADED

        def _new(self, cfg: str, task: str | None = None, verbose: bool = False) -> None:
            raise RuntimeError(f"ultralytics was asked to build a model from {cfg!r}")  # never: the name is fixed

    return PreloadedYOLO(_PRELOADED)


def load_yolo(path: str | Path, yolo_cls: type) -> Any:
    """ultralytics' ``YOLO`` (``yolo_cls``) around the detector of the checkpoint ``path``, read with
    ``read_yolo_checkpoint`` and audited: ultralytics is given the module, never the file."""
    path = Path(path)
    return _wrap(module_from_checkpoint(read_yolo_checkpoint(path), path), yolo_cls)


def load_trusted(path: str | Path, yolo_cls: type) -> Any:
    """``--trust-checkpoint``: the checkpoint ``path`` unpickled in full by ultralytics' own loader (ANY code
    in it runs), then wrapped as ``load_yolo`` does. Only for a file the user named as trusted."""
    from ultralytics.nn.tasks import torch_safe_load

    path = Path(path)
    ckpt, _ = torch_safe_load(str(path), safe_only=False)
    return _wrap(module_from_checkpoint(ckpt, path, audit=False), yolo_cls)
