"""``create_detector``: the boxes a pose model gets, by its data set, with the overrides ``predict`` offers."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from poseapp.boxes.base import Detector, WholeFrameDetector
from poseapp.boxes.rules import PERSON, BoxRule, box_rule_for
from poseapp.boxes.yolo import DEFAULT_DETECTOR
from poseapp.errors import PoseAppError, arg
from poseapp.zoo import Recipe

if TYPE_CHECKING:
    from poseapp.create import ResolvedModel

log = logging.getLogger(__name__)

_FACE_MODEL = {"model": "face_from", "arch": "face_from_arch"}
"""The person model's errors name its arguments as ``create_detector`` takes them."""


def create_detector(
    model: Recipe | str | Path | Any,
    *,
    arch: str | None = None,
    det_model: str | Path | None = DEFAULT_DETECTOR,
    classes: Sequence[str | int] | None = None,
    boxes_file: str | Path | None = None,
    face_from: str | Path | None = None,
    face_from_arch: str | None = None,
    face_from_thr: float = 0.3,
    conf: float | None = None,
    iou: float | None = None,
    max_det: int = 300,
    imgsz: int = 640,
    device: str | None = None,
    half: bool = False,
    batch_size: int = 32,
    flip_test: bool | None = None,
    trusted: Iterable[str | Path] = (),
    offline: bool | None = None,
) -> Detector:
    """The box source for a pose model: its data set's default boxes, unless overridden.

    By default (``box_rule_for``): the detector's person class for human models, its COCO animal classes for
    AnimalPose and AP-10K, the whole frame for Locust, Zebra, Animal Kingdom and WFLW faces.

    Args:
        model: the pose model the boxes are for: a Recipe, a zoo name, a checkpoint path (with ``arch``), or
            a TopDownEstimator (its ``recipe``).
        det_model: the YOLO detector (``YoloDetector``); None or ``"none"``: the whole frame.
        classes: detector class names or ids to keep instead of the default (any model).
        boxes_file: a COCO detection-results JSON whose boxes replace the detector (``BoxesFile``).
        face_from: for a face model, a COCO person model (zoo name or checkpoint, ``face_from_arch``) whose
            head keypoints (scoring at least ``face_from_thr``) on the detected persons give face boxes.
        conf, iou, max_det, imgsz, trusted: the detector's (``YoloDetector``, or ``YoloV5Detector`` for a classic
            yolov5 checkpoint; conf and iou None: that detector's defaults, 0.25 and 0.7 for ultralytics', the
            seed's 0.4 and 0.5 for yolov5's); device, half, batch_size, flip_test:
            the ``face_from`` model's too. ``device`` None: the estimator's device when ``model`` is one,
            else the CPU.
        offline: no download (detector and ``face_from`` model must be cached); None: as ``POSEAPP_OFFLINE`` says.

    Contradicting arguments raise PoseAppError before any model loads; errors name the argument
    (``PoseAppError.render`` shows a command line's flags instead).
    """
    recipe = _recipe_of(model, arch)
    if device is None:
        device = str(getattr(model, "device", "cpu"))
    rule = box_rule_for(recipe.dataset)
    wanted = list(classes) if classes is not None else None
    whole = det_model is None or str(det_model).lower() == "none"
    person = _check(recipe, rule, wanted, whole, boxes_file, face_from, face_from_arch)
    if boxes_file:
        from poseapp.boxes.coco import BoxesFile

        _no_detector(trusted)
        return BoxesFile(boxes_file)
    yolo = dict(det_model=None if whole else det_model, conf=conf, iou=iou, max_det=max_det, imgsz=imgsz, device=device,
                half=half, trusted=tuple(trusted), offline=offline)
    if person is not None:
        from poseapp.create import create_model
        from poseapp.boxes.face import FaceFromPose

        persons = _yolo_or_whole_frame(wanted or PERSON, **yolo)
        try:
            estimator = create_model(person, device=device, half=half,
                                     batch_size=batch_size, flip_test=flip_test, offline=offline)
        except PoseAppError as e:
            raise e.renamed(_FACE_MODEL)
        return FaceFromPose(persons, estimator, thr=face_from_thr)
    return _yolo_or_whole_frame(rule.classes if wanted is None else wanted, **yolo)


def _recipe_of(model: Any, arch: str | None) -> Recipe:
    if isinstance(model, Recipe):
        return model
    if isinstance(getattr(model, "recipe", None), Recipe):  # a TopDownEstimator
        return model.recipe
    from poseapp.create import resolve_recipe

    return resolve_recipe(model, arch)[0]


def _check(recipe: Recipe, rule: BoxRule, wanted: list | None, whole: bool, boxes_file: Any, face_from: Any,
           face_from_arch: Any) -> "ResolvedModel | None":
    """Raise PoseAppError for box arguments that contradict each other or the pose model (nothing loads);
    return the ``face_from`` person model, resolved (None without one)."""
    c, b, d, f, fa = (arg(k) for k in ("classes", "boxes_file", "det_model", "face_from", "face_from_arch"))
    if wanted is not None and not wanted:
        raise PoseAppError(f"{c} is empty: name detector classes or ids, e.g. {c} person,dog")
    if wanted and boxes_file:
        raise PoseAppError(f"{c} picks detector boxes and {b} replaces the detector: pass one of them")
    if wanted and whole:
        raise PoseAppError(f"{c} needs a detector: drop {d} none, or drop {c}")
    if face_from_arch and not face_from:
        raise PoseAppError(f"{fa} names the recipe of a {f} checkpoint: add {f} PATH")
    if not face_from:
        return None
    if boxes_file:
        raise PoseAppError(f"{f} and {b} both give the face boxes: pass one of them")
    if not rule.face:
        raise PoseAppError(f"{f} makes face boxes for a face model (WFLW), and {recipe.name} is a {rule.title} "
                           f"model (boxes: {rule.summary}): drop {f}")
    from poseapp.boxes.face import check_coco_head
    from poseapp.create import resolve_model
    from poseapp.keypoints import get_keypoint_set

    try:
        person = resolve_model(face_from, face_from_arch)
    except PoseAppError as e:
        e.renamed(_FACE_MODEL)
        e.args = (f"{f} {face_from}: {e.args[0]}",)
        raise
    check_coco_head(get_keypoint_set(person.recipe.keypoint_set), f"{f} {face_from}")
    return person


def _yolo_or_whole_frame(classes: Sequence[int | str] | None, *, det_model: str | Path | None,
                         trusted: tuple, **kwargs: Any) -> Detector:
    """A YOLO detector keeping ``classes``, or the whole frame (``classes`` or ``det_model`` None)."""
    if classes is None or det_model is None:
        _no_detector(trusted)
        return WholeFrameDetector()
    from poseapp.boxes.yolov5.detector import (YoloV5Detector, classic_detector_name, fetch_classic_detector,
                                               is_classic_yolov5)

    classic = classic_detector_name(det_model)
    if classic is not None and not Path(det_model).expanduser().exists():  # a name: the cached file, fetched once
        det_model = fetch_classic_detector(classic, offline=kwargs.get("offline"))
    if is_classic_yolov5(Path(det_model).expanduser()):  # the seed's crowdhuman_yolov5m.pt and its kind
        return YoloV5Detector(Path(det_model).expanduser(), classes=classes, **kwargs)
    from poseapp.boxes.yolo import YoloDetector

    return YoloDetector(det_model, classes=classes, trusted=trusted, **kwargs)


def _no_detector(trusted: Iterable[str | Path]) -> None:
    for path in trusted:
        log.warning("--trust-checkpoint %s: this run loads no YOLO detector, so it changes nothing", path)
