"""Reading checkpoints safely and adapting foreign layouts to ours (timm ``checkpoint_filter_fn`` style).

Layouts understood: MMPose 1.x (``{'meta', 'state_dict'}`` with ``backbone.*`` / ``head.*``), MMPose 0.x
(``keypoint_head.*``), HRNet-repo / sithu31296 bare state dicts (``final_layer.*``), and
DataParallel's ``module.`` prefix. Files are unpickled with ``weights_only=True``; the only extra
globals allowed are the numpy ones MMPose 1.x runners store in ``meta['dataset_meta']``.
"""
from __future__ import annotations

import contextlib
import re
import threading
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
from torch import nn

from poseapp.errors import CheckpointError, arg

_RENAMES = (  # (old prefix, new prefix), applied in order to each key
    ("keypoint_head.", "head."),  # MMPose 0.x
    ("final_layer.", "head.final_layer."),  # HRNet repo / sithu31296 PoseHRNet and SimDR
    ("mlp_head_x.", "head.mlp_head_x."),  # sithu31296 SimDR's 1-D heads
    ("mlp_head_y.", "head.mlp_head_y."),
)
_DROP_PREFIXES = ("data_preprocessor.",)  # MMPose 1.x buffers (mean/std), not weights
_TRAINING_ONLY = ("loss", "loss_module")  # key components of training-only modules (RLE flow)
_OPTIONAL = ("num_batches_tracked",)  # BatchNorm fills it in when absent (very old checkpoints)


def numpy_safe_globals() -> list:
    """The numpy globals a pickled ``ndarray`` or numpy scalar needs, under NumPy 1.x and 2.x names."""
    import numpy as np

    core = getattr(np, "_core", None) or np.core
    reconstruct = core.multiarray._reconstruct
    scalar = core.multiarray.scalar  # numpy scalars (np.float32(...)) a meta dict may hold
    allowed: list = [
        np.ndarray,
        np.dtype,
        (reconstruct, "numpy.core.multiarray._reconstruct"),
        (reconstruct, "numpy._core.multiarray._reconstruct"),
        (scalar, "numpy.core.multiarray.scalar"),
        (scalar, "numpy._core.multiarray.scalar"),
    ]
    dtypes = getattr(np, "dtypes", None)  # NumPy >= 1.25 pickles some dtypes by their class
    for name in ("BoolDType", "Int8DType", "Int16DType", "Int32DType", "Int64DType", "UInt8DType",
                 "UInt16DType", "UInt32DType", "UInt64DType", "Float16DType", "Float32DType", "Float64DType"):
        if dtypes is not None and hasattr(dtypes, name):
            allowed.append(getattr(dtypes, name))
    return allowed


_SAFE_GLOBALS_LOCK = threading.RLock()


@contextlib.contextmanager
def only_safe_globals(entries: list) -> Iterator[None]:
    """torch's weights-only unpickler admitting its own safe set and ``entries``, and nothing that another
    library registered process-wide (``add_safe_globals``: ultralytics' own restricted loader registers real
    model classes, which the unpickler would then call with the file's arguments). The process-wide
    registrations are put back afterwards. The list is torch's process-wide state: poseapp's own loads take
    turns (a lock), but a weights-only load another thread makes meanwhile sees this list, not its own."""
    with _SAFE_GLOBALS_LOCK:
        saved = torch.serialization.get_safe_globals()
        torch.serialization.clear_safe_globals()
        try:
            with torch.serialization.safe_globals(entries):
                yield
        finally:
            torch.serialization.clear_safe_globals()
            torch.serialization.add_safe_globals(saved)


def archive_problem(path: str | Path) -> str | None:
    """Why the ``torch.save`` zip archive ``path`` would unpack to more than it holds (a zip bomb), or None:
    torch stores its records uncompressed, so a compressed record, or records larger in all than the file,
    is no archive torch wrote. A file that is not a zip: None (torch.load says what it is)."""
    try:
        with zipfile.ZipFile(path) as archive:
            records = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return None
    if any(r.compress_type != zipfile.ZIP_STORED for r in records):
        return "it holds compressed records, which torch.save never writes (a zip bomb unpacks to gigabytes)"
    if sum(r.file_size for r in records) > Path(path).stat().st_size:
        return "its records are larger than the file, which no archive torch.save wrote is"
    return None


def _why_unreadable(error: Exception) -> str:
    """One line saying why torch.load refused a file, and the fix."""
    text = str(error)
    refused = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if refused:
        return (f"it holds Python objects that are not weights ({refused.group(1)}), which poseapp does not "
                "unpickle; re-save it as torch.save({'state_dict': model.state_dict()}, path)")
    detail = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\n\n|$)", text, re.S)
    reason = " ".join((detail.group(1) if detail else text or type(error).__name__).split())[:160]
    return (f"not a PyTorch checkpoint, or corrupt/truncated ({reason}); check that this is the checkpoint "
            f"you meant (a downloaded one: delete it and fetch it again)")


def read_checkpoint(path: str | Path) -> tuple[OrderedDict[str, torch.Tensor], dict]:
    """Load ``path`` (weights_only) and unwrap it: returns (state dict, meta dict; {} when absent).

    Raises CheckpointError for a missing, corrupt or non-checkpoint file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist: check the path or fetch the model first")
    problem = archive_problem(path)
    if problem:
        raise CheckpointError(f"cannot read checkpoint {path}: {problem}; check that this is the checkpoint you "
                              "meant (a downloaded one: delete it and fetch it again)")
    try:
        with only_safe_globals(numpy_safe_globals()):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # zip, pickle and weights-only errors of every kind
        raise CheckpointError(f"cannot read checkpoint {path}: {_why_unreadable(e)}") from e
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"checkpoint {path} holds a {type(obj).__name__}, not a state dict: pass a .pth file "
                              "saved by MMPose or torch.save(model.state_dict())")
    meta = obj.get("meta") if "state_dict" in obj else None
    sd = obj["state_dict"] if "state_dict" in obj else obj
    if not isinstance(sd, Mapping) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"checkpoint {path} has no state dict of tensors: pass a .pth file saved by MMPose "
                              "or torch.save(model.state_dict())")
    return OrderedDict(sd), dict(meta) if isinstance(meta, Mapping) else {}


def _rename(key: str) -> str:
    """One key in our names: ``module.`` stripped, 0.x / HRNet-repo prefixes mapped to 1.x ones."""
    if key.startswith("module."):
        key = key[len("module."):]
    for old, new in _RENAMES:
        if key.startswith(old):
            return new + key[len(old):]
    return key


def adapt_names(state_dict: Mapping[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
    """``state_dict`` with every key renamed to our layout, nothing dropped."""
    return OrderedDict((_rename(k), v) for k, v in state_dict.items())


def adapt_state_dict(
    state_dict: Mapping[str, torch.Tensor], model: nn.Module | None = None
) -> OrderedDict[str, torch.Tensor]:
    """Rename/drop keys of a foreign checkpoint so that they match our (MMPose 1.x) names.

    Strips ``module.``; drops ``data_preprocessor.*`` and training-only ``*.loss.*`` / ``*.loss_module.*``
    (the RLE flow model); renames ``keypoint_head.`` -> ``head.`` (MMPose 0.x) and a top-level
    ``final_layer.`` / ``mlp_head_{x,y}.`` -> ``head.…`` (HRNet repo, sithu31296 PoseHRNet and SimDR).
    ``model`` is the target (timm filter signature; the current rules do not depend on it). Returns a new
    OrderedDict; the input is not modified.
    """
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, value in adapt_names(state_dict).items():
        if key.startswith(_DROP_PREFIXES):
            continue
        if any(part in _TRAINING_ONLY for part in key.split(".")[:-1]):
            continue
        out[key] = value
    return out


def describe_head(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """What kind of head an adapted (``head.*``) state dict carries and for how many keypoints, in words
    (``"an RLE regression head for 17 keypoints"``), or None when the keys say nothing familiar."""
    def shape(key: str) -> tuple[int, ...] | None:
        value = state_dict.get(key)
        return tuple(value.shape) if value is not None else None

    final = shape("head.final_layer.weight") or shape("head.deconv_head.final_layer.weight")
    if shape("head.cls_x.weight") and final:
        return f"an RTMCC (RTMPose SimCC) head for {final[0]} keypoints"
    if shape("head.mlp_head_x.weight") and final:
        return f"a SimCC/SimDR head for {final[0]} keypoints"
    fc = shape("head.fc.weight")
    if fc and any(".flow_model." in k or ".loss" in k for k in state_dict):
        return f"an RLE regression head for {fc[0] // 4} keypoints"
    if fc:
        return f"a regression head with {fc[0]} outputs ({fc[0] // 2} keypoints x 2, or {fc[0] // 4} x 4 for RLE)"
    if final:
        return f"a heatmap head for {final[0]} keypoints"
    return None


def check_state_dict(state_dict: Mapping[str, torch.Tensor], model: nn.Module, path: str | Path,
                     target: str | None = None, found: str | None = None) -> None:
    """Raise CheckpointError (one line) unless ``state_dict`` fits ``model`` key for key and shape for shape.

    ``target`` names what the model was built for (a zoo recipe), ``found`` what the checkpoint holds
    (``describe_head``): both appear in the message when given. Its fix names the argument ``arch``.
    """
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = [k for k in expected if k not in state_dict and not k.endswith(_OPTIONAL)]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {expected[k]}"
        for k, v in state_dict.items() if k in expected and tuple(v.shape) != expected[k]
    ]
    if not (missing or unexpected or mismatched):
        return
    parts = [f"{len(missing)} missing, {len(unexpected)} unexpected keys, {len(mismatched)} shape mismatches"]
    if missing:
        parts.append("missing: " + ", ".join(missing[:3]))
    if unexpected:
        parts.append("unexpected: " + ", ".join(unexpected[:3]))
    if mismatched:
        parts.append("shape mismatch: " + "; ".join(mismatched[:3]))
    holds = f" ({found})" if found else ""
    raise CheckpointError(
        f"checkpoint {path}{holds} does not fit {target or 'the model'} ({'; '.join(parts)}). Is this checkpoint "
        f"for another architecture or keypoint count? pass {arg('arch')} with the zoo name it follows"
    )


def load_weights(model: nn.Module, path: str | Path, target: str | None = None) -> dict[str, Any]:
    """Read ``path``, adapt its keys, check it fits, and load it strictly into ``model``.

    ``target`` names what ``model`` was built for, for the error message. Returns the checkpoint's
    ``meta`` dict ({} when absent). Raises CheckpointError on any mismatch.
    """
    raw, meta = read_checkpoint(path)
    state_dict = adapt_state_dict(raw, model)
    check_state_dict(state_dict, model, path, target, describe_head(adapt_names(raw)))
    model.load_state_dict(state_dict, strict=True)
    return meta
