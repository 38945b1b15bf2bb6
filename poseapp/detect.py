"""Detectors: frames in, boxes out.

Every detector is a callable ``detector(frames) -> list[Detections]`` (one entry per frame, in order):

- ``YoloDetector``: any model ultralytics loads (.pt, .onnx, an OpenVINO folder, a bare name such as
  ``yolo11n.pt``), run on all frames at once; a .pt is unpickled weights-only through an allow-list
  (``poseapp.yolo_checkpoint``), never by ultralytics. ``ultralytics`` is imported lazily, on construction.
- ``WholeFrameDetector``: one box covering the frame (centred single-animal crops, Locust, Zebra...).
- ``BoxesFile``: precomputed boxes from a COCO detection-results JSON (e.g. MMPose's
  ``COCO_val2017_detections_AP_H_56_person.json``), matched to frames by file name or image id.
- ``FaceFromPose``: face boxes for face models (WFLW), from a person model's head keypoints on a person
  detector's boxes (``face_boxes_from_keypoints``).

Which boxes a pose model gets by default follows its data set: ``box_rule_for`` reads the one table
(``_BOX_RULES``) that the CLI, its ``--help`` and ``python infer.py models`` all use.

Boxes are xyxy float32 image pixels everywhere.
"""
from __future__ import annotations

import json
import logging
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Protocol, Sequence

import numpy as np

from poseapp.errors import PoseAppError, suggest
from poseapp.results import Detections, Frame

log = logging.getLogger(__name__)

_DET_MODEL_FIX = "pass --det-model PATH, a name such as yolo11n.pt, or none"

# Set (unless the user set them) before ultralytics is first imported: it reads them at import time.
_ULTRALYTICS_ENV = {
    "YOLO_OFFLINE": "1",  # no DNS probe at import, no analytics events, no pip update / auto-install attempts
    "YOLO_AUTOINSTALL": "0",  # a missing optional package is a warning, never a run-time `pip install`
    # Read on every check (not at import), so it holds even if ultralytics was imported before us: no
    # `pip install onnx` attempt when loading an .onnx model (onnx is not needed to run one).
    "ULTRALYTICS_SKIP_REQUIREMENTS_CHECKS": "1",
    "YOLO_VERBOSE": "0",  # ultralytics' own stdout logger at ERROR level: the library stays quiet
}


class DetectorError(PoseAppError):
    """A detector cannot be built or its boxes file cannot be read; the message names the file and the fix."""


class Detector(Protocol):
    """Anything that turns frames into boxes."""

    def __call__(self, frames: Sequence[Frame]) -> list[Detections]:
        """One Detections per frame, in the frames' order."""
        ...


# --------------------------------------------------------------------------------------------------------------
# Which boxes suit a pose model's data set
# --------------------------------------------------------------------------------------------------------------

PERSON = (0,)
COCO_ANIMALS = tuple(range(14, 24))  # bird, cat, dog, horse, sheep, cow, elephant, bear, zebra, giraffe
_COCO_NAMES = {0: "person", 14: "bird", 15: "cat", 16: "dog", 17: "horse", 18: "sheep", 19: "cow", 20: "elephant",
               21: "bear", 22: "zebra", 23: "giraffe"}  # the COCO classes the table below names


@dataclass(frozen=True)
class BoxRule:
    """The boxes a pose model trained on one data set gets unless the user picks others (``--boxes``,
    ``--det-classes``, ``--face-from``).

    Attributes:
        title: the data set's name in help texts.
        classes: COCO class ids (0-based, ultralytics order) to keep from the detector; None: no COCO class
            fits, the box is the whole frame.
        face: a face data set: the box is the whole frame, or a face box derived from a person model's head
            keypoints when the user names one (``FaceFromPose``).
    """

    title: str
    classes: tuple[int, ...] | None
    face: bool = False

    @property
    def kind(self) -> str:
        """``person``, ``animals``, ``whole frame`` or ``face``."""
        if self.face:
            return "face"
        if self.classes is None:
            return "whole frame"
        return "person" if self.classes == PERSON else "animals"

    @property
    def class_names(self) -> list[str]:
        """The COCO names of ``classes`` (empty for the whole frame)."""
        return [_COCO_NAMES[c] for c in self.classes or ()]

    @property
    def summary(self) -> str:
        """A short form for tables: ``person``, ``animals (cat,dog,horse,sheep,cow)``, ``animals (bird,cat,dog,...)``,
        ``whole frame``, ``face``."""
        if self.kind != "animals":
            return self.kind
        names = self.class_names
        return f"animals ({','.join(names) if len(names) <= 5 else ','.join(names[:3]) + ',...'})"


_BOX_RULES: dict[str, BoxRule] = {  # keys: the zoo's ``dataset`` values
    "coco": BoxRule("COCO", PERSON),
    "mpii": BoxRule("MPII", PERSON),
    "crowdpose": BoxRule("CrowdPose", PERSON),
    "posetrack18": BoxRule("PoseTrack18", PERSON),
    "body8": BoxRule("Body8", PERSON),  # RTMPose's merge of 8 human data sets
    "deepfashion_upper": BoxRule("DeepFashion upper", PERSON),
    "deepfashion_lower": BoxRule("DeepFashion lower", PERSON),
    "deepfashion_full": BoxRule("DeepFashion full", PERSON),
    "deepfashion2": BoxRule("DeepFashion2", PERSON),
    "animalpose": BoxRule("AnimalPose", (15, 16, 17, 18, 19)),  # cat, dog, horse, sheep, cow
    "ap10k": BoxRule("AP-10K", COCO_ANIMALS),
    "locust": BoxRule("Locust", None),  # centred single-animal crops: the whole frame is the box
    "zebra": BoxRule("Zebra", None),
    "animalkingdom": BoxRule("Animal Kingdom", None),  # 850 species: most have no COCO class
    "wflw": BoxRule("WFLW", None, face=True),  # no COCO face class: the whole frame, or --face-from
}
_ALIASES = {"ak": "animalkingdom", "posetrack": "posetrack18"}


def box_rules() -> dict[str, BoxRule]:
    """Every data set's default boxes, in table order (aliases left out)."""
    return dict(_BOX_RULES)


def box_rule_for(dataset: str) -> BoxRule:
    """The default boxes of a pose model trained on ``dataset`` (the zoo's ``dataset`` field: ``coco``,
    ``ap10k``, ``wflw``...; any ``deepfashion_*`` is a person). Raises UnknownNameError (with close names)
    for an unknown data set."""
    key = dataset.strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key in _BOX_RULES:
        return _BOX_RULES[key]
    if key.startswith("deepfashion_"):
        return BoxRule(dataset, PERSON)
    raise suggest(dataset, sorted([*_BOX_RULES, *_ALIASES]), "data set")


def detector_classes_for(dataset: str) -> tuple[int, ...] | None:
    """The 0-based COCO class ids (ultralytics order) to keep for a pose model trained on ``dataset``.

    None means no COCO class fits (Locust, Zebra, Animal Kingdom, and faces): use the whole frame as the box
    by default. See ``box_rule_for``.
    """
    return box_rule_for(dataset).classes


def resolve_classes(names: Iterable[str | int], class_names: Mapping[int, str]) -> list[int]:
    """Turn ``--det-classes person,dog`` or ``0,16`` (or a mix) into class ids of ``class_names``.

    Names match case-insensitively, with ``_`` standing for a space (``traffic_light``). Duplicates are
    dropped, order kept. Raises UnknownNameError for an unknown name (suggesting close ones) or an id the
    model does not have.
    """
    by_name = {_norm_class(n): i for i, n in class_names.items()}
    ids: list[int] = []
    for item in names:
        text = str(item).strip()
        if not text:
            continue
        if text.lstrip("-").isdigit():
            cid = int(text)
            if class_names and cid not in class_names:
                raise suggest(text, [str(i) for i in sorted(class_names)], "detector class id")
        elif _norm_class(text) in by_name:
            cid = by_name[_norm_class(text)]
        else:
            raise suggest(text, list(class_names.values()), "detector class")
        if cid not in ids:
            ids.append(cid)
    return ids


def _norm_class(name: str) -> str:
    return name.strip().lower().replace("_", " ")


# --------------------------------------------------------------------------------------------------------------
# Whole frame
# --------------------------------------------------------------------------------------------------------------


class WholeFrameDetector:
    """One box ``[0, 0, w, h]`` per frame, score 1.0, label -1."""

    def __call__(self, frames: Sequence[Frame]) -> list[Detections]:
        out = []
        for frame in frames:
            h, w = frame.shape
            out.append(
                Detections(
                    np.array([[0, 0, w, h]], np.float32), np.ones(1, np.float32), np.full(1, -1, np.int64)
                )
            )
        return out


# --------------------------------------------------------------------------------------------------------------
# Face boxes from a person model's head keypoints
# --------------------------------------------------------------------------------------------------------------

COCO_HEAD = ("nose", "left_eye", "right_eye", "left_ear", "right_ear")  # COCO keypoints 0-4

# A mean adult head in face widths (ear to ear = 1; anthropometric means: pupils 63 mm apart, ears 145 mm),
# origin between the pupils, x to the subject's left, y down, z out of the face: COCO's nose (its tip), eyes
# (pupils) and ears (the tragus, beside the ear canal), in COCO_HEAD order.
_HEAD_3D = np.array([
    [0.0, 0.30, 0.18],  # nose tip: 43 mm below the pupils, 26 mm in front of them
    [0.22, 0.0, 0.0],  # left eye
    [-0.22, 0.0, 0.0],  # right eye
    [0.5, 0.12, -0.55],  # left ear: 17 mm below the pupils, 80 mm behind them
    [-0.5, 0.12, -0.55],  # right ear
])
# No view of the head shows two of its points further apart than they are in 3D: pixel distance / span is
# a lower bound on the face width in pixels, whatever the head's yaw, pitch and roll.
_HEAD_SPAN = np.linalg.norm(_HEAD_3D[:, None] - _HEAD_3D[None], axis=-1)
FACE_TOP = 0.2  # brow top above the eye line, in face widths
FACE_BOTTOM = 0.8  # chin below the eye line, in face widths


def face_boxes_from_keypoints(
    keypoints: np.ndarray, scores: np.ndarray, thr: float = 0.3
) -> tuple[np.ndarray, np.ndarray]:
    """Face boxes from COCO head keypoints, shaped like WFLW's (a tight box around its 98 face landmarks).

    Args:
        keypoints: (N, K, 2) image pixels of N persons; the first 5 of the K are COCO's nose, left eye,
            right eye, left ear, right ear (COCO-17 and its supersets).
        scores: (N, K) keypoint confidences.
        thr: a head keypoint counts when its score is at least this.

    Returns:
        boxes (M, 4) float32 xyxy image pixels, and kept (M,) int64: the person each box belongs to.
        A person with fewer than 2 head keypoints scoring at least ``thr`` (or whose confident head
        keypoints all coincide) gets no box.

    The rule, in face widths ``w`` (ear to ear, which a WFLW box spans; it is as tall as wide):

    - ``w`` is the largest ``pixel distance / 3D distance`` over the pairs of confident head keypoints, the
      3D distances taken on a mean head (``_HEAD_3D``). A pair never looks longer than it is, so each ratio
      is a lower bound on ``w`` and the largest is the least foreshortened: the ears in a frontal view, the
      eyes when an ear is hidden, ear to nose or eye in profile.
    - Vertically, the box runs from ``FACE_TOP`` = 0.2 w above the eye line (the brows) to ``FACE_BOTTOM``
      = 0.8 w below it (the chin; about 1.7 nose-to-eye heights below the nose). The eye line is the
      confident eyes' mean y, else the ears' mean y less 0.12 w (the ears sit that far below the pupils).
    - Horizontally, it is centred on the confident keypoints' x extent, ``w`` wide (wider if they span
      more): ear to ear in a frontal view, ear to nose in profile.

    On WFLW's ground truth (its pupils as eyes, its nose tip as nose) the box has IoU 0.75 or more with the
    tight landmark box (``tests/test_detect.py``). The box ignores roll: for a tilted head it is the upright
    face's box, a little smaller than the tilted face's (the pose model's crop padding covers that).
    """
    kpts = np.asarray(keypoints, np.float64)[:, : len(COCO_HEAD)]
    conf = np.asarray(scores, np.float64)[:, : len(COCO_HEAD)]
    boxes, kept = [], []
    for i, (points, ok) in enumerate(zip(kpts, conf >= thr)):
        idx = np.flatnonzero(ok & np.isfinite(points).all(axis=1))
        if len(idx) < 2:
            continue
        a, b = np.triu_indices(len(idx), k=1)
        pair_px = np.linalg.norm(points[idx[a]] - points[idx[b]], axis=1)
        w = float((pair_px / _HEAD_SPAN[idx[a], idx[b]]).max())
        if w <= 0:
            continue
        eyes, ears = idx[(idx == 1) | (idx == 2)], idx[idx >= 3]
        eye_y = points[eyes, 1].mean() if len(eyes) else points[ears, 1].mean() - _HEAD_3D[3, 1] * w
        x0, x1 = points[idx, 0].min(), points[idx, 0].max()
        half = max(w, x1 - x0) / 2
        cx = (x0 + x1) / 2
        boxes.append([cx - half, eye_y - FACE_TOP * w, cx + half, eye_y + FACE_BOTTOM * w])
        kept.append(i)
    return np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(kept, np.int64)


def check_coco_head(keypoint_set: Any, model: str) -> None:
    """Raise DetectorError unless ``keypoint_set`` (a KeypointSet) starts with COCO's nose, eyes and ears."""
    if tuple(keypoint_set.names[: len(COCO_HEAD)]) != COCO_HEAD:
        raise DetectorError(
            f"{model} has the {keypoint_set.name} keypoint set: face boxes need a person model with COCO "
            f"keypoints (nose, eyes and ears first), e.g. --face-from res50_coco-256x192"
        )


class FaceFromPose:
    """Face boxes for face models (WFLW): a person model's head keypoints on a person detector's boxes.

    Args:
        persons: finds the people (a YoloDetector keeping the person class, or WholeFrameDetector).
        estimator: a person pose model with COCO keypoints (``poseapp.create_model("res50_coco-256x192")``):
            ``estimator(images, boxes) -> [(keypoints (N, K, 2), scores (N, K)), ...]``, with a ``keypoint_set``.
        thr: a head keypoint counts when it scores at least this.

    One face box per person with at least 2 confident head keypoints (``face_boxes_from_keypoints``),
    clipped to the frame; a box left with no area (a face outside the frame) is dropped. Scores are the
    person boxes' scores; labels are -1 (no detector class). Raises DetectorError on construction for a
    model whose keypoints do not start with COCO's nose, eyes and ears.
    """

    def __init__(self, persons: Detector, estimator: Any, thr: float = 0.3) -> None:
        check_coco_head(estimator.keypoint_set, getattr(getattr(estimator, "recipe", None), "name", "the model"))
        self.persons = persons
        self.estimator = estimator
        self.thr = thr

    def __call__(self, frames: Sequence[Frame]) -> list[Detections]:
        if not frames:
            return []
        people = self.persons(frames)
        poses = self.estimator([f.image for f in frames], [d.boxes for d in people])
        out = []
        for frame, det, (keypoints, scores) in zip(frames, people, poses):
            boxes, kept = face_boxes_from_keypoints(keypoints, scores, self.thr)
            h, w = frame.shape
            boxes = np.clip(boxes, 0, np.array([w, h, w, h], np.float32))
            inside = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
            boxes, kept = boxes[inside], kept[inside]
            log.debug("%s: %d of %d persons gave a face box", frame.source, len(kept), len(det))
            out.append(Detections(boxes, det.scores[kept], np.full(len(kept), -1, np.int64)))
        return out


# --------------------------------------------------------------------------------------------------------------
# YOLO via ultralytics
# --------------------------------------------------------------------------------------------------------------


def _import_yolo() -> Any:
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
    _import_yolo()  # applies _ULTRALYTICS_ENV first
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

    _import_yolo()  # applies _ULTRALYTICS_ENV first
    from ultralytics.utils.downloads import GITHUB_ASSETS_REPO, attempt_download_asset

    release = inspect.signature(attempt_download_asset).parameters["release"].default
    return f"https://github.com/{GITHUB_ASSETS_REPO}/releases/download/{release}/{name}"


def detector_url(name: str) -> str:
    """Where the detector ``name`` is downloaded from: ultralytics' GitHub release, after POSEAPP_MIRROR."""
    from poseapp import hub

    return hub.mirror_url(_release_url(name))


def fetch_detector(name: str, *, cache: Path | None = None) -> Path:
    """Download the ultralytics detector ``name`` (``yolo11n.pt``) into ``cache`` (default: the weights cache)
    unless it is there, through ``poseapp.hub`` (resume, retries, POSEAPP_MIRROR, a temp name until done). The
    download is checked against ``_DETECTOR_SHA256`` where it has a digest, and against the checkpoint
    allow-list (``yolo_checkpoint.check_yolo_checkpoint``) before it gets its final name: a file that fails is
    deleted. ``POSEAPP_OFFLINE`` forbids the download. Failures raise DetectorError or DownloadError."""
    from poseapp import hub
    from poseapp.yolo_checkpoint import NotACheckpointError, UnsafeCheckpointError, check_yolo_checkpoint

    if not is_detector_name(name):
        raise DetectorError(f"{name} is not a detector name ultralytics knows (e.g. yolo11n.pt)")
    dest = (cache if cache is not None else hub.cache_dir()) / name
    if dest.is_file():
        return dest
    if hub.is_offline():
        raise DetectorError(f"detector model {name} is not in the cache (POSEAPP_OFFLINE is set): run "
                            f"`python infer.py fetch {name}` on a machine with internet, or copy it to {dest}")
    url = detector_url(name)

    def vet(part: Path) -> None:
        try:
            check_yolo_checkpoint(part)
        except UnsafeCheckpointError as e:
            raise DetectorError(f"the download of {url} was deleted: {e.reason} (such a file can run code when "
                                "opened): the server (or POSEAPP_MIRROR) does not serve ultralytics' file") from e
        except NotACheckpointError as e:
            raise DetectorError(f"the download of {url} was deleted: {e.reason}: check the URL, or "
                                "POSEAPP_MIRROR") from e

    return hub.fetch(_release_url(name), name, detector_sha256(name), name=name, cache=dest.parent, check=vet)


def _resolve_model(model: str | Path) -> Path:
    """The file or folder to give ultralytics for ``model``, or a DetectorError naming it and the fix.

    An existing path is used as is. A bare known name (``yolo11n.pt``) is looked up in poseapp's cache
    (``poseapp.hub.cache_dir()``) and otherwise downloaded there first (``fetch_detector``; POSEAPP_MIRROR
    honoured), unless ``POSEAPP_OFFLINE`` is set.
    """
    from poseapp import hub

    path = Path(model).expanduser()
    if path.exists():
        return path
    bare = path.parent == Path(".") and str(model) == path.name
    if not bare or path.name not in _known_asset_names():  # (only a bare name imports ultralytics here)
        raise DetectorError(f"detector model {model} not found: {_DET_MODEL_FIX}")
    cached = hub.cache_dir() / path.name
    if not cached.is_file() and not hub.is_offline():
        log.warning("detector %s is not downloaded yet: fetching it into %s (once)", path.name, cached.parent)
    return fetch_detector(path.name)  # the cached file when it is there


class YoloDetector:
    """An ultralytics YOLO model run on every frame of a batch at once.

    Args:
        model: a .pt / .onnx file, an OpenVINO export folder, or a bare name ultralytics can fetch
            (``yolo11n.pt``; it lands in ``poseapp.hub.cache_dir()``).
        conf: minimum box confidence.
        iou: NMS IoU threshold.
        max_det: most boxes per frame.
        classes: class ids (0-based; ``(0,)`` = person) or names to keep; None keeps every class.
        device: ``"cpu"``, ``"cuda:0"``, ``"0"``...
        half: FP16 inference (ignored by ultralytics on the CPU).
        imgsz: inference size in pixels.
        trusted: files the user trusts to run code (``--trust-checkpoint``): if ``model`` is one of them,
            ultralytics loads it itself, in full (a .pt is unpickled: any code in it runs).

    An .onnx file or an OpenVINO folder (``_EXPORTS``) is given to ultralytics by path. Any other file is
    read as a PyTorch checkpoint by ``yolo_checkpoint.load_yolo``: weights-only unpickling with an allow-list
    of model classes, the module then handed to ultralytics, which never opens the file; one that needs or
    holds anything else is refused (UnsafeCheckpointError). A model yaml and the formats poseapp does not
    vet (TorchScript, TensorRT...: ``_CODE_FORMATS``) need ``trusted``. The model is loaded and run once on a blank image on construction, so a bad file
    raises here, not on the first frame. ultralytics runs offline and quiet (see
    ``_ULTRALYTICS_ENV``): no package installs, no DNS probe, no analytics, no stdout.
    """

    def __init__(
        self,
        model: str | Path,
        *,
        conf: float = 0.25,
        iou: float = 0.7,
        max_det: int = 300,
        classes: Sequence[int | str] | None = (0,),
        device: str = "cpu",
        half: bool = False,
        imgsz: int = 640,
        trusted: Iterable[str | Path] = (),
    ) -> None:
        self.path = _resolve_model(model)
        self.trusted = False
        for other in trusted:
            if same_file(self.path, other):
                self.trusted = True
            else:
                log.warning("--trust-checkpoint %s is not the detector this run loads (%s): it changes nothing "
                            "(pose checkpoints always load weights-only)", other, self.path)
        yolo_cls = _import_yolo()
        self._kwargs: dict[str, Any] = dict(
            conf=conf,
            iou=iou,
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
            raise DetectorError(
                f"detector model {model} needs the package {e.name or e}: pip install -r requirements.txt"
            ) from e
        except Exception as e:  # ultralytics / onnxruntime / torch raise many types for a bad model file
            why = f"{type(e).__name__}: {' '.join(str(e).split())}"  # one line, whatever ultralytics wrote
            raise DetectorError(f"cannot load detector model {model} ({why}): {_DET_MODEL_FIX}") from e
        if classes is not None:
            self._kwargs["classes"] = resolve_classes(classes, self.class_names)
        log.info("YOLO detector %s loaded (%d classes, device %s)", self.path, len(self.class_names), device)

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
        """ultralytics Results for (H, W, 3) uint8 BGR images."""
        return self._model.predict(images, **self._kwargs)


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
    from poseapp.yolo_checkpoint import load_trusted, load_yolo

    name = path.name.lower()
    if trusted:
        log.warning("--trust-checkpoint %s: ultralytics loads it in full (any code in it runs)", path)
        if name.endswith(".pt"):
            return load_trusted(_stable_path(path), yolo_cls)
        return yolo_cls(str(_stable_path(path)), task=None if name.endswith(_YAML) else "detect")
    fmt = next((f for suffix, f in _EXPORTS.items() if name.endswith(suffix)), None)
    if fmt is not None and path.is_dir() == (fmt == "openvino"):
        return yolo_cls(str(_stable_path(path, fmt)), task="detect")
    if name.endswith(_YAML + _CODE_FORMATS):
        what = "a model yaml (ultralytics evaluates code in it, and builds an untrained detector)" if name.endswith(
            _YAML) else "a format poseapp does not vet (it can run code when loaded)"
        raise DetectorError(f"detector model {path} is {what}: pass a .pt checkpoint, an .onnx export or an OpenVINO "
                            f"folder, or --trust-checkpoint {shlex.quote(str(path))} to load it anyway")
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
    changed = text != text.strip() or "'" in text or (text.endswith(".pt") and check_yolov5u_filename(text) != text)
    if fmt is not None and not changed:
        from ultralytics.nn.autobackend import AutoBackend

        model_type = getattr(AutoBackend, "_model_type", None)
        changed = model_type is not None and model_type(text) != fmt
    if changed:
        raise DetectorError(f"detector model {path}: ultralytics would not open this name as it stands (it strips "
                            "spaces and quotes from model names): rename the file or folder")
    return resolved


def same_file(path: Path, other: str | Path) -> bool:
    """Whether ``other`` names the file ``path`` (same inode; False for a path that does not exist)."""
    try:
        return os.path.samefile(path, Path(other).expanduser())
    except OSError:
        return False


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


# --------------------------------------------------------------------------------------------------------------
# Precomputed boxes (COCO detection results)
# --------------------------------------------------------------------------------------------------------------

_Key = tuple[str, "str | int"]  # ("name", "000000000785.jpg") or ("id", 785)
_FLOAT32_MAX = float(np.finfo(np.float32).max)


class BoxesFile:
    """Precomputed boxes from a COCO detection-results JSON.

    The file is a list of ``{"image_id": int | str, "bbox": [x, y, w, h], "score": float,
    "category_id": int}``; an entry may name its image with ``"file_name"`` or ``"image"`` instead of
    ``image_id``. A COCO annotation file (a dict with ``annotations`` and ``images``) is read the same way
    (ground-truth boxes, score 1.0 where absent).

    Frames are matched by file name (basename of ``Frame.source``), by stem, or, for an integer image id,
    by the integer value of the file stem (``000000000785.jpg`` <-> 785). ``ann_file`` (a COCO annotation
    JSON with ``images: [{id, file_name}]``) maps ids to file names instead.

    Boxes keep file order. ``[x, y, w, h]`` becomes ``[x, y, x + w, y + h]`` computed in float64, then
    cast to float32 (the rule MMPose's parity fixtures follow, bit for bit). Labels are the file's
    ``category_id`` (COCO's 1-based ids: 1 = person; -1 where absent); ``classes`` keeps only those ids and
    ``min_score`` drops lower scores. A frame with no entry gets empty Detections.

    Raises DetectorError naming the file and the problem for a missing, unreadable or malformed file.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        classes: Sequence[int] | None = None,
        min_score: float = 0.0,
        ann_file: str | Path | None = None,
    ) -> None:
        self.path = Path(path)
        data = _read_json(self.path, "boxes file")
        id_to_name = _image_names(_read_json(Path(ann_file), "annotation file"), Path(ann_file)) if ann_file else {}
        if isinstance(data, dict) and "annotations" in data:
            id_to_name = {**_image_names(data, self.path), **id_to_name}
            data = data["annotations"]
        if not isinstance(data, list):
            raise DetectorError(
                f"boxes file {self.path} must hold a JSON list of {{image_id, bbox, score, category_id}} entries, "
                f"got {type(data).__name__}"
            )
        boxes, scores, labels, keys = _parse_entries(data, self.path, id_to_name)
        keep = scores >= min_score
        if classes is not None:
            keep &= np.isin(labels, np.asarray(list(classes), np.int64))
        self._boxes, self._scores, self._labels = boxes[keep], scores[keep], labels[keep]
        self._rows: dict[_Key, list[int]] = {}
        for row, key in enumerate(k for k, kept in zip(keys, keep) if kept):
            self._rows.setdefault(key, []).append(row)
        log.info("boxes file %s: %d of %d boxes kept, %d images", self.path, keep.sum(), len(keep), len(self._rows))

    def __call__(self, frames: Sequence[Frame]) -> list[Detections]:
        return [self.for_source(f.source) for f in frames]

    def for_source(self, source: str) -> Detections:
        """The boxes of the image file ``source`` (a path or a file name), in file order."""
        rows = sorted({r for key in _frame_keys(source) for r in self._rows.get(key, [])})
        if not rows:
            return Detections.empty()
        idx = np.asarray(rows)
        return Detections(self._boxes[idx], self._scores[idx], self._labels[idx])


def _read_json(path: Path, what: str) -> Any:
    """The parsed JSON at ``path``, or a DetectorError naming it and what is wrong."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError as e:
        raise DetectorError(f"{what} {path} not found: pass an existing COCO JSON file") from e
    except (OSError, UnicodeDecodeError) as e:
        raise DetectorError(f"cannot read {what} {path}: {e}") from e
    except json.JSONDecodeError as e:
        raise DetectorError(f"{what} {path} is not valid JSON: {e}") from e
    except (ValueError, RecursionError) as e:  # an integer over Python's 4300 digits; nesting deeper than its stack
        why = "nested too deeply" if isinstance(e, RecursionError) else e
        raise DetectorError(f"{what} {path} is not valid JSON as Python reads it: {why}") from e


def _image_names(ann: Any, path: Path) -> dict[int, str]:
    """id -> file basename from a COCO annotation dict's ``images`` list."""
    images = ann.get("images") if isinstance(ann, dict) else None
    if not isinstance(images, list):
        raise DetectorError(f"annotation file {path} has no 'images' list of {{id, file_name}}")
    try:
        return {int(im["id"]): Path(str(im["file_name"])).name for im in images}
    except (KeyError, TypeError, ValueError, OverflowError) as e:
        raise DetectorError(f"annotation file {path}: an 'images' entry lacks a valid id or file_name ({e})") from e


def _parse_entries(
    entries: list[Any], path: Path, id_to_name: Mapping[int, str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[_Key]]:
    """(N, 4) float32 xyxy, (N,) float32 scores, (N,) int64 category ids, and each entry's image key."""
    xywh = np.zeros((len(entries), 4), np.float64)
    scores = np.ones(len(entries), np.float64)
    labels = np.full(len(entries), -1, np.int64)
    keys: list[_Key] = []
    for i, entry in enumerate(entries):
        where = f"boxes file {path}: entry {i}"
        if not isinstance(entry, dict):
            raise DetectorError(f"{where} is not an object")
        xywh[i] = _bbox(entry, where)
        try:
            scores[i] = float(entry.get("score", 1.0))
            labels[i] = int(entry.get("category_id", -1))
        except (TypeError, ValueError) as e:
            raise DetectorError(f"{where} has a non-numeric score or category_id ({e})") from e
        except OverflowError as e:  # a category_id beyond int64, a number beyond a float
            raise DetectorError(f"{where} has a score or category_id out of range ({e}): category_id is a COCO "
                                f"class id (1 = person), score a number") from e
        if not abs(scores[i]) <= _FLOAT32_MAX:  # NaN, an infinity, or one once float32
            raise DetectorError(f"{where} has the score {entry.get('score')!r}: a score is a finite number")
        keys.append(_entry_key(entry, where, id_to_name))
    xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1).astype(np.float32)
    return xyxy, scores.astype(np.float32), labels, keys


def _bbox(entry: Mapping[str, Any], where: str) -> list[float]:
    """``entry["bbox"]`` as 4 float64 values [x, y, w, h] with w, h >= 0."""
    if "bbox" not in entry:
        raise DetectorError(f"{where} has no bbox")
    bbox = entry["bbox"]
    values: list[float] = []
    if isinstance(bbox, (list, tuple)):  # not a string: "1234" would read as [1, 2, 3, 4]
        try:
            values = [float(v) for v in bbox]
        except (TypeError, ValueError, OverflowError):
            values = []
    if len(values) != 4 or not all(np.isfinite(values)):
        raise DetectorError(f"{where}: bbox must be 4 finite numbers [x, y, w, h], got {bbox!r}")
    if values[2] < 0 or values[3] < 0:
        raise DetectorError(f"{where}: bbox {bbox!r} has a negative width or height (expected [x, y, w, h])")
    x, y, w, h = values
    if max(abs(x), abs(y), abs(x + w), abs(y + h)) > _FLOAT32_MAX:  # boxes are float32: it would be infinite
        raise DetectorError(f"{where}: bbox {bbox!r} is beyond float32's range (expected [x, y, w, h] in pixels)")
    return values


def _entry_key(entry: Mapping[str, Any], where: str, id_to_name: Mapping[int, str]) -> _Key:
    """The image an entry belongs to, as a frame-matching key."""
    for field in ("file_name", "image"):
        if isinstance(entry.get(field), str):
            return ("name", Path(entry[field]).name)
    image_id = entry.get("image_id")
    if isinstance(image_id, str):
        if not (image_id.isascii() and image_id.isdigit()):  # "\u00b2".isdigit(), but int() refuses it
            return ("name", Path(image_id).name)
        image_id = int(image_id)
    if isinstance(image_id, int) and not isinstance(image_id, bool):
        return ("name", id_to_name[image_id]) if image_id in id_to_name else ("id", image_id)
    raise DetectorError(f"{where} has no image_id, file_name or image")


def _frame_keys(source: str) -> list[_Key]:
    """The keys a frame from ``source`` answers to: basename, stem, and the stem's integer value."""
    p = Path(source)
    keys: list[_Key] = [("name", p.name), ("name", p.stem)]
    if p.stem.isascii() and p.stem.isdigit():  # as _entry_key: "\u00b2".isdigit(), but int() refuses it
        keys.append(("id", int(p.stem)))
    return keys
