"""The metadata of an exported detector (.onnx, OpenVINO folder), checked before ultralytics reads it.

ultralytics copies every metadata entry of an export onto its backend as an attribute, and some select code
paths or sizes: ``format=dnn`` swaps onnxruntime for OpenCV's ONNX reader (which follows external-data paths
out of the model's folder), ``imgsz`` or ``batch`` of tens of thousands allocate gigabytes. ``check_metadata``
admits the entries ultralytics' exporter writes, with values in the ranges real detectors have, and tool
annotations with a dotted name (``onnx.infer``, written by onnxruntime's quantiser), which no code reads.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from poseapp.boxes.base import DetectorError
from poseapp.boxes.yolo_checkpoint import BOX_TASKS, STRIDES

_WRITTEN = frozenset({"description", "author", "date", "version", "license", "docs", "stride", "task", "head",
                      "batch", "imgsz", "names", "args", "channels", "end2end", "dla", "kpt_shape", "kpt_names"})
"""The entries ultralytics' exporter writes."""
_MAX_IMGSZ = 4096
_MAX_BATCH = 64


def read_metadata(path: Path, fmt: str) -> dict[str, Any]:
    """The metadata of the export ``path`` (``fmt``: ``onnx`` or ``openvino``), values as ultralytics parses them."""
    if fmt == "onnx":
        import onnxruntime

        try:
            session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own types for a file that is not a model
            raise DetectorError(f"cannot load detector model {path} (not an ONNX model onnxruntime reads: "
                                f"{' '.join(str(e).split())[:160]}): export it again") from e
        raw: dict[str, Any] = dict(session.get_modelmeta().custom_metadata_map)
    else:
        import yaml

        sidecar = path / "metadata.yaml"
        try:
            raw = yaml.safe_load(sidecar.read_text(encoding="utf-8")) if sidecar.is_file() else {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
            raise DetectorError(f"detector model {path}: cannot read {sidecar.name} ({' '.join(str(e).split())[:160]}): "
                                "export it again") from e
        raw = raw if isinstance(raw, dict) else {}
    out = {}
    for key, value in raw.items():
        if isinstance(value, str) and key in {"stride", "batch", "imgsz", "channels", "names", "kpt_shape"}:
            try:
                value = ast.literal_eval(value)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                pass  # left a string: the range checks below refuse it
        out[str(key)] = value
    return out


def check_metadata(path: Path, fmt: str) -> None:
    """Raise DetectorError (one line naming the entry) for metadata no export of a detector has."""
    meta = read_metadata(path, fmt)

    def refuse(key: str, why: str) -> DetectorError:
        return DetectorError(f"detector model {path}: its metadata entry {key}={str(meta[key])[:60]!r} {why}; "
                             f"export it again with ultralytics (yolo export format={fmt})")

    for key in meta:
        if key not in _WRITTEN and "." not in key:
            raise refuse(key, "is not one ultralytics' exporter writes (ultralytics would act on it)")
    if "stride" in meta and meta["stride"] not in STRIDES:
        raise refuse("stride", f"is not one of {sorted(STRIDES)}")
    if "batch" in meta and not (isinstance(meta["batch"], int) and 1 <= meta["batch"] <= _MAX_BATCH):
        raise refuse("batch", f"is not a batch size from 1 to {_MAX_BATCH}")
    if "channels" in meta and meta["channels"] not in (1, 3):
        raise refuse("channels", "is not 1 or 3")
    if "task" in meta and meta["task"] not in BOX_TASKS:
        raise refuse("task", f"is not a task that gives boxes ({', '.join(BOX_TASKS)})")
    if "imgsz" in meta:
        size = meta["imgsz"] if isinstance(meta["imgsz"], (list, tuple)) else [meta["imgsz"]]
        if not (1 <= len(size) <= 2 and all(isinstance(s, int) and 1 <= s <= _MAX_IMGSZ for s in size)):
            raise refuse("imgsz", f"is not an image size up to {_MAX_IMGSZ}")
