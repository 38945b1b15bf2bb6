"""The YOLO detector (ultralytics), the detector files it accepts, and detector downloads (through ``hub``)."""
from __future__ import annotations

import logging
import os
import re
import shlex
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from poseapp.boxes.base import DetectorError
from poseapp.boxes.rules import resolve_classes
from poseapp.errors import PoseAppError, arg
from poseapp.results import Detections, Frame

log = logging.getLogger(__name__)

DEFAULT_DETECTOR = "yolo11n.pt"
"""The detector a pose model gets unless told otherwise (``create_detector``, ``predict --det-model``)."""
_DET_MODEL_FIX = f"pass {arg('det_model')} PATH, a name such as yolo11n.pt, or none"

# Set (unless the user set them) before ultralytics is first imported: it reads them at import time.
_ULTRALYTICS_ENV = {
    "YOLO_OFFLINE": "1",  # no DNS probe at import, no analytics events, no pip update / auto-install attempts
    "YOLO_AUTOINSTALL": "0",  # a missing optional package is a warning, never a run-time `pip install`
    # Read on every check (not at import), so it holds even if ultralytics was imported before us: no
    # `pip install onnx` attempt when loading an .onnx model (onnx is not needed to run one).
    "ULTRALYTICS_SKIP_REQUIREMENTS_CHECKS": "1",
    "YOLO_VERBOSE": "0",  # ultralytics' own stdout logger at ERROR level: the library stays quiet
}


def import_yolo() -> Any:
    """``ultralytics.YOLO``, imported with ``_ULTRALYTICS_ENV`` applied (user-set values win) and ultralytics'
    own restricted loading switched on (``ULTRALYTICS_SAFE_LOAD``, whatever the user set): poseapp never lets
    ultralytics open a checkpoint by itself, and should some path of ultralytics' open one all the same, it is
    weights-only (ultralytics' allow-list) and builds no model from a yaml with ``eval``."""
    for key, value in _ULTRALYTICS_ENV.items():
        os.environ.setdefault(key, value)
    os.environ["ULTRALYTICS_SAFE_LOAD"] = "true"  # read when ultralytics is first imported (8.4.67 reads only "true")
    try:
        from ultralytics import YOLO
        from ultralytics.nn import tasks
    except ImportError as e:
        raise DetectorError(f"the YOLO detector needs ultralytics ({e}): pip install -r requirements.txt") from e
    if not getattr(tasks, "SAFE_LOAD", True):  # ultralytics was imported before poseapp set the variable
        tasks.SAFE_LOAD = True
    return YOLO


def _known_asset_names() -> frozenset[str]:
    """Model names ultralytics can fetch by itself (``yolo11n.pt``, ``yolov8s.pt``...)."""
    import_yolo()  # applies _ULTRALYTICS_ENV first
    from ultralytics.utils.downloads import GITHUB_ASSETS_NAMES

    return frozenset(GITHUB_ASSETS_NAMES)


def is_detector_name(name: str) -> bool:
    """Whether ``name`` is a bare model name ultralytics can fetch (``yolo11n.pt``, ``yolov8s.pt``...)."""
    return Path(name).name == name and name.endswith(".pt") and name in _known_asset_names()


_DETECTOR_SHA256: dict[str, str] = {}
"""sha256 prefixes of detector files, by name, where their publisher gives one. Ultralytics publishes none for
its release assets (yolo11n.pt...): those are vetted by ``yolo_checkpoint``'s allow-list instead, before the
download gets its final name and again on every load."""


def detector_sha256(name: str) -> str | None:
    """The pinned sha256 prefix of the detector file ``name``, or None where its publisher gives none."""
    return _DETECTOR_SHA256.get(name)


def _release_url(name: str) -> str:
    """The GitHub release URL ultralytics downloads the asset ``name`` from."""
    import inspect

    import_yolo()  # applies _ULTRALYTICS_ENV first
    from ultralytics.utils.downloads import GITHUB_ASSETS_REPO, attempt_download_asset

    release = inspect.signature(attempt_download_asset).parameters["release"].default
    return f"https://github.com/{GITHUB_ASSETS_REPO}/releases/download/{release}/{name}"


def detector_url(name: str) -> str:
    """Where the detector ``name`` is downloaded from: ultralytics' GitHub release, after POSEAPP_MIRROR."""
    from poseapp import hub

    return hub.mirror_url(_release_url(name))


def fetch_detector(name: str, *, cache: Path | None = None, offline: bool | None = None) -> Path:
    """Download the ultralytics detector ``name`` (``yolo11n.pt``) into ``cache`` (default: the weights cache)
    unless it is there, through ``poseapp.hub`` (resume, retries, POSEAPP_MIRROR, a temp name until done). The
    download is checked against ``_DETECTOR_SHA256`` where it has a digest, and against the checkpoint
    allow-list (``yolo_checkpoint.check_yolo_checkpoint``) before it gets its final name: a file that fails is
    deleted. ``offline`` (None: ``POSEAPP_OFFLINE``) forbids the download. Failures raise DetectorError or
    DownloadError."""
    from poseapp import hub
    from poseapp.boxes.yolo_checkpoint import NotACheckpointError, UnsafeCheckpointError, check_yolo_checkpoint

    if not is_detector_name(name):
        raise DetectorError(f"{name} is not a detector name ultralytics knows (e.g. yolo11n.pt)")
    dest = (cache if cache is not None else hub.cache_dir()) / name
    if dest.is_file():
        return dest
    if hub.is_offline() if offline is None else offline:
        raise DetectorError(f"detector model {name} is not in the cache (offline: --offline or POSEAPP_OFFLINE): run "
                            f"`python infer.py fetch {name}` on a machine with internet, or copy it to {dest}")
    release = _release_url(name)
    url = hub.mirror_url(release)

    def vet(part: Path) -> None:
        try:
            check_yolo_checkpoint(part)
        except UnsafeCheckpointError as e:
            raise DetectorError(f"the download of {url} was deleted: {e.reason} (such a file can run code when "
                                "opened): the server (or POSEAPP_MIRROR) does not serve ultralytics' file") from e
        except NotACheckpointError as e:
            raise DetectorError(f"the download of {url} was deleted: {e.reason}: check the URL, or "
                                "POSEAPP_MIRROR") from e

    return hub.fetch(release, name, detector_sha256(name), name=name, cache=dest.parent, check=vet, offline=False)


def _resolve_model(model: str | Path, offline: bool | None = None) -> Path:
    """The file or folder to give ultralytics for ``model``, or a DetectorError naming it and the fix.

    An existing path is used as is. A bare known name (``yolo11n.pt``) is looked up in poseapp's cache
    (``poseapp.hub.cache_dir()``) and otherwise downloaded there first (``fetch_detector``; POSEAPP_MIRROR
    honoured), unless ``offline`` (None: ``POSEAPP_OFFLINE``).
    """
    from poseapp import hub

    if not str(model).strip():
        raise DetectorError(f"the detector model is empty: {_DET_MODEL_FIX}")
    path = Path(model).expanduser()
    if path.exists():
        return path
    bare = path.parent == Path(".") and str(model) == path.name
    if not bare or path.name not in _known_asset_names():  # (only a bare name imports ultralytics here)
        raise DetectorError(f"detector model {model} not found: {_DET_MODEL_FIX}")
    cached = hub.cache_dir() / path.name
    offline = hub.is_offline() if offline is None else offline
    if not cached.is_file() and not offline:
        log.warning("detector %s is not downloaded yet: fetching it into %s (once)", path.name, cached.parent)
    return fetch_detector(path.name, offline=offline)  # the cached file when it is there


class YoloDetector:
    """An ultralytics YOLO model run on every frame of a batch at once.

    Args:
        model: a .pt / .onnx file, an OpenVINO export folder, or a bare name ultralytics can fetch
            (``yolo11n.pt``; it lands in ``poseapp.hub.cache_dir()``).
        conf: minimum box confidence (None: 0.25).
        iou: NMS IoU threshold (None: 0.7).
        max_det: most boxes per frame.
        classes: class ids (0-based; ``(0,)`` = person) or names to keep; None keeps every class.
        device: ``"cpu"``, ``"cuda:0"``, ``"0"``...
        half: FP16 inference (ignored by ultralytics on the CPU).
        imgsz: inference size in pixels.
        trusted: files the user trusts to run code (``--trust-checkpoint``): if ``model`` is one of them,
            ultralytics loads it itself, in full (a .pt is unpickled: any code in it runs).
        offline: a bare name must already be in the cache (None: as ``POSEAPP_OFFLINE`` says).

    An .onnx file or an OpenVINO folder (``_EXPORTS``) is given to ultralytics by path. Any other file is
    read as a PyTorch checkpoint by ``yolo_checkpoint.load_yolo``: weights-only unpickling with an allow-list
    of model classes, the module then handed to ultralytics, which never opens the file; one that needs or
    holds anything else is refused (UnsafeCheckpointError). A model yaml and the formats poseapp does not
    vet (TorchScript, TensorRT...: ``_CODE_FORMATS``) need ``trusted``; an export's metadata is checked first
    (``exports.check_metadata``). The model is loaded and run once on a blank image on construction, so a bad file
    raises here, not on the first frame. ultralytics runs offline and quiet (see
    ``_ULTRALYTICS_ENV``): no package installs, no DNS probe, no analytics, no stdout.
    """

    def __init__(
        self,
        model: str | Path,
        *,
        conf: float | None = None,
        iou: float | None = None,
        max_det: int = 300,
        classes: Sequence[int | str] | None = (0,),
        device: str = "cpu",
        half: bool = False,
        imgsz: int = 640,
        trusted: Iterable[str | Path] = (),
        offline: bool | None = None,
    ) -> None:
        self.path = _resolve_model(model, offline)
        from poseapp.outputs import same_file

        self.trusted = False
        for other in trusted:
            if same_file(self.path, Path(other).expanduser()):
                self.trusted = True
            else:
                log.warning("--trust-checkpoint %s is not the detector this run loads (%s): it changes nothing "
                            "(pose checkpoints always load weights-only)", other, self.path)
        yolo_cls = import_yolo()
        self._kwargs: dict[str, Any] = dict(
            conf=0.25 if conf is None else conf,
            iou=0.7 if iou is None else iou,
            max_det=max_det,
            classes=None,  # resolved below, once the model's class names are known
            device=device,
            imgsz=imgsz,
            verbose=False,
            **_half_kwargs(half),
        )
        try:
            self._model = _open_yolo(self.path, yolo_cls, self.trusted)
            self._predict([np.zeros((imgsz, imgsz, 3), np.uint8)])  # load now: a bad file fails here
        except PoseAppError:
            raise
        except ImportError as e:  # requirement checks are off: a missing runtime shows up here
            listed = e.name in {"onnxruntime", "torch", "torchvision", "cv2", "numpy"}  # in requirements.txt
            fix = "pip install -r requirements.txt" if listed or not e.name else (
                f"pip install {e.name}, or export it to ONNX")
            raise DetectorError(f"detector model {model} needs the package {e.name or e}: {fix}") from e
        except Exception as e:  # ultralytics / onnxruntime / torch raise many types for a bad model file
            why = f"{type(e).__name__}: {' '.join(str(e).split())}"  # one line, whatever ultralytics wrote
            raise DetectorError(f"cannot load detector model {model} ({why}): {_DET_MODEL_FIX}") from e
        self.imgsz = self._used_imgsz(imgsz)
        if classes is not None:
            self._kwargs["classes"] = resolve_classes(classes, self.class_names)
        log.info("YOLO detector %s loaded (%d classes, device %s)", self.path, len(self.class_names), device)

    def _used_imgsz(self, asked: int) -> tuple[int, int]:
        """The (height, width) the detector runs at, as ultralytics settled it on the first call: ``asked``
        rounded up to the stride, or an export's own size; a warning says when it is not ``asked``."""
        predictor = getattr(self._model, "predictor", None)
        used = getattr(predictor, "imgsz", None)
        if not (isinstance(used, (list, tuple)) and len(used) == 2):
            return asked, asked
        used = (int(used[0]), int(used[1]))
        if used == (asked, asked):
            return used
        model = getattr(predictor, "model", None)
        if hasattr(model, "imgsz") and not getattr(model, "dynamic", False):
            why = f"it is an export made for {used[1]}x{used[0]} only (export it again at {asked}, or use the .pt)"
        else:
            why = f"the detector rounds it up to a multiple of its stride: {used[1]}x{used[0]}"
        log.warning("detector %s: input size %d is not used: %s", self.path.name, asked, why)
        return used

    @property
    def class_names(self) -> dict[int, str]:
        """Class id -> name, as the model defines them (COCO's 80 for the stock models)."""
        return {int(k): str(v) for k, v in self._model.names.items()}

    def __call__(self, frames: Sequence[Frame]) -> list[Detections]:
        """Detect on all ``frames`` in one ultralytics call; one Detections per frame."""
        if not frames:
            return []
        return [_to_detections(r) for r in self._predict([f.image for f in frames])]

    def _predict(self, images: list[np.ndarray]) -> list[Any]:
        """ultralytics Results for (H, W, 3) uint8 BGR images. ultralytics' predictor set-up sets torch's
        process-wide thread count to the CPU count minus one (``select_device``): that is undone, or the pose
        network would run on one thread of two."""
        import torch

        threads = torch.get_num_threads()
        try:
            return self._model.predict(images, **self._kwargs)
        finally:
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)


_EXPORTS = {".onnx": "onnx", "_openvino_model": "openvino"}
"""The exported formats poseapp hands to ultralytics by path, by how the name ends (an .onnx file, an OpenVINO
folder), and the format ultralytics must see in that name: they hold a graph, no code. Any other file is read
as a PyTorch checkpoint (``yolo_checkpoint``)."""
_CODE_FORMATS = (".torchscript", ".engine", ".tflite", ".pb", ".mnn", ".mlpackage", ".mlmodel", "_saved_model",
                 "_ncnn_model", "_paddle_model", "_web_model", "_rknn_model", "_imx_model", "_executorch_model")
"""Formats ultralytics also runs that poseapp does not vet (TorchScript runs its own code; the others bring
runtimes that load plug-ins): only with --trust-checkpoint."""
_YAML = (".yaml", ".yml")


def _open_yolo(path: Path, yolo_cls: Any, trusted: bool) -> Any:
    """ultralytics' YOLO for ``path``: an export it reads by path, else a checkpoint through the allow-list
    (``trusted``: ultralytics' own full load)."""
    from poseapp.boxes.yolo_checkpoint import load_trusted, load_yolo

    name = path.name.lower()
    if trusted:
        log.warning("--trust-checkpoint %s: ultralytics loads it in full (any code in it runs)", path)
        if name.endswith(".pt"):
            return load_trusted(_stable_path(path), yolo_cls)
        return yolo_cls(str(_stable_path(path)), task=None if name.endswith(_YAML) else "detect")
    fmt = next((f for suffix, f in _EXPORTS.items() if name.endswith(suffix)), None)
    if fmt is not None and path.is_dir() == (fmt == "openvino"):
        from poseapp.boxes.exports import check_metadata

        stable = _stable_path(path, fmt)
        check_metadata(stable, fmt)
        return yolo_cls(str(stable), task="detect")
    if name.endswith(_YAML + _CODE_FORMATS):
        what = "a model yaml (ultralytics evaluates code in it, and builds an untrained detector)" if name.endswith(
            _YAML) else "a format poseapp does not vet (it can run code when loaded)"
        raise DetectorError(f"detector model {path} is {what}: pass a .pt checkpoint, an .onnx export or an OpenVINO "
                            f"folder, or {arg('trusted')} {shlex.quote(str(path))} to load it anyway")
    if path.is_dir():
        raise DetectorError(f"detector model {path} is a folder but not an OpenVINO export (NAME_openvino_model/): "
                            "pass a .pt checkpoint, an .onnx export or an OpenVINO folder")
    return load_yolo(path, yolo_cls)


def _stable_path(path: Path, fmt: str | None = None) -> Path:
    """``path`` made absolute, once sure ultralytics will open that very path: it strips names, drops quotes,
    appends .pt to a bare asset name and renames yolov5 names to yolov5u, which could make it open a file
    beside the one named. ``fmt``: the format ultralytics must see in the name."""
    from ultralytics.utils.checks import check_yolov5u_filename

    resolved = path.resolve()
    text = str(resolved)
    changed = text != text.strip() or "'" in text or check_yolov5u_filename(text, verbose=False) != text
    if text.lower().endswith(_YAML) and not changed:  # a trusted yaml: yaml_model_load renames P6 names
        changed = re.sub(r"(\d+)([nslmx])6(.+)?$", r"\1\2-p6\3", resolved.stem) != resolved.stem
    if fmt is not None and not changed:
        from ultralytics.nn.autobackend import AutoBackend

        model_type = getattr(AutoBackend, "_model_type", None)
        changed = model_type is not None and model_type(text) != fmt
    if changed:
        raise DetectorError(f"detector model {path}: ultralytics would not open this name as it stands (it strips "
                            "spaces and quotes from model names): rename the file or folder")
    return resolved


def _half_kwargs(half: bool) -> dict[str, Any]:
    """FP16 in the installed ultralytics' words: ``quantize=16`` (8.4+, where ``half`` warns) or ``half=True``."""
    if not half:
        return {}
    from ultralytics.cfg import DEFAULT_CFG_DICT

    return {"quantize": 16} if "quantize" in DEFAULT_CFG_DICT else {"half": True}


def _to_detections(result: Any) -> Detections:
    """An ultralytics Results -> Detections (xyxy float32 pixels, float32 scores, int64 labels)."""
    boxes = result.boxes
    if boxes is None or len(boxes) == 0:
        return Detections.empty()
    return Detections(
        boxes.xyxy.cpu().numpy().astype(np.float32).reshape(-1, 4),
        boxes.conf.cpu().numpy().astype(np.float32).reshape(-1),
        boxes.cls.cpu().numpy().astype(np.int64).reshape(-1),
    )
