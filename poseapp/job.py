"""The whole ``predict`` job as one call: :class:`PredictOptions` in, a :class:`RunReport` out.

``python infer.py predict`` only parses its flags into a PredictOptions, calls :func:`run_predict` and prints
the report; a program does the same::

    from poseapp import PredictOptions, run_predict
    report = run_predict(PredictOptions(source="photos/", save_json=True))
    print(report.out, report.frames, report.instances, report.failures)

The order of the work is the floor the command line stands on: the cheap checks first (device, source, an
``out_dir`` that would overwrite an input or cannot be written) so they fail before any model loads; then
the pose model is resolved once and its boxes chosen (``create_detector``), the weights load, and every frame
goes through the pipeline into the writers (``open_outputs``). Whatever stops the run (an error, Ctrl-C,
SIGTERM) every writer still finalises what it has, and the folders the run created are removed if empty.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from poseapp.boxes.yolo import DEFAULT_DETECTOR
from poseapp.engine.tracking import DEFAULT_TRACK_BUFFER
from poseapp.errors import PoseAppError, arg, render
from poseapp.pipeline import DEFAULT_MAX_LATENCY
from poseapp.sources import DEFAULT_MAX_PIXELS, DEFAULT_STREAM_TIMEOUT

if TYPE_CHECKING:
    from poseapp.boxes import Detector
    from poseapp.estimator import TopDownEstimator
    from poseapp.outputs import Outputs
    from poseapp.pipeline import Pipeline, VideoOptions
    from poseapp.sinks import Window
    from poseapp.sources import Source
    from poseapp.zoo import Recipe

log = logging.getLogger(__name__)

DEFAULT_POSE_MODEL = "hrnet-w32_coco-256x192"

_RENAMED = {"model": "pose_model", "arch": "pose_arch", "recipe": "pose_recipe", "classes": "det_classes",
            "trusted": "trust_checkpoint"}
"""create_model's and create_detector's argument names, as PredictOptions calls them (for error messages)."""


@dataclass(frozen=True)
class PredictOptions:
    """Everything a predict run takes; the fields are ``python infer.py predict``'s flags (``--pose-model`` is
    ``pose_model``), and errors name the field that was wrong (the command line shows its flag)."""

    source: str | int | Path
    pose_model: str | Path = DEFAULT_POSE_MODEL
    pose_arch: str | None = None
    pose_recipe: str | Path | None = None  # an .onnx/.xml pose model's recipe file (poseapp.recipes)
    det_model: str | Path | None = DEFAULT_DETECTOR  # None or "none": the whole frame
    det_conf: float | None = None  # None: the detector's default (0.25; a classic yolov5 checkpoint: 0.4)
    det_iou: float | None = None  # None: the detector's default (0.7; a classic yolov5 checkpoint: 0.5)
    max_det: int = 300
    img_size: int = 640  # the detector's input size (ultralytics' imgsz)
    det_classes: Sequence[str | int] | None = None
    boxes_file: str | Path | None = None
    face_from: str | Path | None = None
    face_from_arch: str | None = None
    face_from_thr: float = 0.3
    trust_checkpoint: Sequence[str | Path] = ()
    device: str = "auto"
    half: bool = False
    backend: str = "auto"  # auto (the fastest here, measured once), torch, onnxruntime, openvino
    precision: str | None = None  # fp32, bf16, fp16 (CUDA); None: an export's own, else fp32
    threads: int | None = None  # CPU threads for the pose network; None: the CPUs this process may use (torch: its own)
    batch_size: int = 32
    flip_test: bool | None = None  # None: the recipe's (on for the published configs)
    out_dir: str | Path = "runs/predict"
    exist_ok: bool = False
    save_media: bool = True  # annotated images / video
    save_json: bool = False  # keypoints: predictions.json for images, <stem>.jsonl for a video or stream
    save_csv: bool = False  # a row per frame and instance: predictions.csv or <stem>.csv
    save_parquet: bool = False  # the same rows, keypoints as lists: predictions.parquet or <stem>.parquet
    show: bool = False
    kpt_thr: float = 0.3
    radius: int | None = None
    thickness: int | None = None
    draw_bbox: bool = False
    color_by: str | None = None  # keypoint or track; None: track when tracking
    det_every: int = 1  # the detector on every Nth frame; between, boxes from the keypoints before
    track: bool | None = None  # track IDs; None: for videos and streams (and whenever smoothing)
    track_buffer: int = DEFAULT_TRACK_BUFFER  # frames a lost instance keeps its ID
    smooth: str = "none"  # none, one-euro, savgol (poseapp.engine.smoothing)
    smooth_min_cutoff: float = 1.0  # One-Euro: Hz
    smooth_beta: float = 0.05  # One-Euro: per pixel/s
    smooth_d_cutoff: float = 1.0  # One-Euro: Hz, for the speed
    smooth_window: int = 9  # Savitzky-Golay: odd, frames
    smooth_order: int = 2  # Savitzky-Golay: polynomial order
    max_latency: float = DEFAULT_MAX_LATENCY * 1000  # milliseconds a live frame may wait to share its batch
    stream_buffer: bool = False  # keep up to 30 live frames when the engine falls behind (default: the newest)
    recursive: bool = False
    vid_stride: int = 1
    max_frames: int | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    stream_timeout: float = DEFAULT_STREAM_TIMEOUT
    offline: bool | None = None  # None: as POSEAPP_OFFLINE says

    def __post_init__(self) -> None:
        """The checks the command line's option types make, for a program that builds the options itself:
        a value out of range is a PoseAppError naming the field, before anything loads. A single string
        where a list goes is one item (``det_classes="person,dog"`` is split at commas, as the flag is)."""
        if isinstance(self.det_classes, str):
            object.__setattr__(self, "det_classes", [w.strip() for w in self.det_classes.split(",") if w.strip()])
        if isinstance(self.trust_checkpoint, (str, Path)):
            object.__setattr__(self, "trust_checkpoint", (self.trust_checkpoint,))
        from poseapp.drawing import COLOR_BY
        from poseapp.engine.smoothing import SMOOTHERS
        from poseapp.runtimes.base import BACKENDS, PRECISIONS, check_choice

        object.__setattr__(self, "backend", check_choice(self.backend, BACKENDS, "backend"))
        object.__setattr__(self, "smooth", check_choice(self.smooth, SMOOTHERS, "smooth"))
        if self.color_by is not None:
            object.__setattr__(self, "color_by", check_choice(self.color_by, COLOR_BY, "color_by"))
        if self.precision is not None:
            object.__setattr__(self, "precision", check_choice(self.precision, PRECISIONS, "precision"))
        for name, low, high in _FLOAT_RANGES:
            if not (name in ("det_conf", "det_iou") and getattr(self, name) is None):
                _check_number(self, name, float, low, high)
        for name, low, high, optional in _INT_RANGES:
            if not (optional and getattr(self, name) is None):
                _check_number(self, name, int, low, high)
        if not 0 < self.stream_timeout <= 86400:
            raise PoseAppError(f"{arg('stream_timeout')} must be more than 0 and at most 86400 seconds "
                               f"(got {self.stream_timeout!r})")
        if self.smooth_window % 2 == 0:
            raise PoseAppError(f"{arg('smooth_window')} must be odd (got {self.smooth_window}): the window is "
                               "centred on its frame")
        if self.smooth_order >= self.smooth_window:
            raise PoseAppError(f"{arg('smooth_order')} must be below {arg('smooth_window')} ({self.smooth_window}); "
                               f"got {self.smooth_order}")
        if self.smooth != "none" and self.track is False:
            raise PoseAppError(f"{arg('smooth')} {self.smooth} smooths each track's keypoints, so it needs track IDs, "
                               f"but tracking is off ({arg('no_track')}): drop one of the two")
        if self.color_by == "track" and self.track is False:
            raise PoseAppError(f"{arg('color_by')} track needs track IDs, but tracking is off ({arg('no_track')}): "
                               "drop one of the two")
        out = Path(self.out_dir).expanduser()
        if out.exists() and not out.is_dir():
            raise PoseAppError(f"{arg('out_dir')} {out} is a file, not a folder: choose another {arg('out_dir')}")


_FLOAT_RANGES = (("det_conf", 0.0, 1.0), ("det_iou", 0.0, 1.0), ("face_from_thr", 0.0, 1.0),
                 ("kpt_thr", None, None), ("stream_timeout", None, None), ("smooth_min_cutoff", 1e-6, None),
                 ("smooth_beta", 0.0, None), ("smooth_d_cutoff", 1e-6, None), ("max_latency", 0.0, 60000.0))
_INT_RANGES = (("max_det", 1, None, False), ("img_size", 32, 4096, False), ("batch_size", 1, None, False),
               ("vid_stride", 1, None, False), ("max_frames", 1, None, True), ("max_pixels", 1, None, False),
               ("radius", 1, None, True), ("thickness", 1, None, True), ("threads", 1, None, True),
               ("det_every", 1, None, False), ("track_buffer", 1, None, False), ("smooth_window", 3, None, False),
               ("smooth_order", 0, None, False))


def _check_number(options: PredictOptions, name: str, kind: type, low: float | None, high: float | None) -> None:
    """``options.name`` is a finite ``kind`` (an int for int fields: not a bool, a float or a string) within
    [low, high]; else a PoseAppError naming the field."""
    import math

    value = getattr(options, name)
    is_kind = (isinstance(value, (int, float)) if kind is float else isinstance(value, int)) \
        and not isinstance(value, bool)
    if not is_kind or (kind is float and not math.isfinite(value)):
        what = "a whole number" if kind is int else "a finite number"
        raise PoseAppError(f"{arg(name)} must be {what} (got {value!r})")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"between {low:g} and {high:g}" if low is not None and high is not None else f"at least {low:g}"
        raise PoseAppError(f"{arg(name)} must be {bounds} (got {value!r})")


@dataclass
class RunReport:
    """What a run did, filled as it goes (so a run stopped half-way still reports what it finished)."""

    source: str = ""
    kind: str = ""  # the source's: image, video or stream
    model: str = ""
    out: Path | None = None  # the folder written (None: nothing is saved)
    frames: int = 0
    instances: int = 0
    pose_time: float = 0.0
    det_time: float = 0.0
    detector_frames: int = 0  # frames the detector ran on (fewer than frames with det_every > 1)
    dropped: int = 0  # live frames dropped because the engine fell behind (stream_buffer keeps them)
    tracks: int = 0  # distinct track IDs (0: not tracking)
    start: float = field(default_factory=time.perf_counter)
    stale: list[Path] = field(default_factory=list)  # temporary files of killed runs, removed
    failures: list[tuple[str, str]] = field(default_factory=list)  # (input, one-line reason)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    @property
    def saved(self) -> bool:
        """Whether any file was written into ``out``."""
        return self.out is not None and any(p.is_file() for p in self.out.rglob("*"))


def _log_warning(message: str) -> None:
    log.warning("%s", render(message))


def run_predict(options: PredictOptions, report: RunReport | None = None, *,
                warn: Callable[[str], None] = _log_warning) -> RunReport:
    """Run the job ``options`` describe and return its report (``report``, when given, is filled as the run
    goes: after an exception it holds what was done). ``warn`` gets the one-line warnings (a ``kpt_thr``
    outside the model's scores...), their options marked as errors mark them (``errors.render``); the
    default logs them.

    Raises:
        PoseAppError: a bad option, input, model or output (one line naming the option and the fix), before
            any model loads where it can be told then.
    """
    from poseapp.create import resolve_device
    from poseapp.sources import open_source

    o = options
    report = report if report is not None else RunReport()
    report.source = str(o.source)
    device = resolve_device(o.device, half=o.half)
    source = open_source(o.source, recursive=o.recursive, vid_stride=o.vid_stride, max_frames=o.max_frames,
                         max_pixels=o.max_pixels, stream_timeout=o.stream_timeout)
    report.kind = source.kind
    out_dir = Path(o.out_dir).expanduser()  # out_dir="~/res": the shell leaves ~ to us
    created = first_missing(out_dir)  # the top folder this run creates, if any
    window = None
    try:
        window = _open_window(o)
        if o.save_media or o.save_json or o.save_csv or o.save_parquet:
            from poseapp.sinks import next_run_dir

            report.out = next_run_dir(out_dir, exist_ok=o.exist_ok)
            if created is None and not o.exist_ok and report.out != out_dir:
                created = report.out  # runs/predict2, beside an existing runs/predict
            report.stale = _check_run_dir(o, source, report.out)
        pipeline = _build_pipeline(o, device, warn, source)
        report.start = time.perf_counter()  # the run itself: the summary's speeds leave start-up out
        report.model = pipeline.estimator.recipe.name
        _stream(pipeline, source, window, o, report)
    except BaseException:
        _abandon(source, window, created)
        raise
    finally:
        report.failures = list(source.failures)
    if created is not None:
        remove_if_empty(created)
    return report


def _open_window(o: PredictOptions) -> "Window | None":
    from poseapp.sinks import Window

    return Window(f"poseapp: {o.source}") if o.show else None


def _check_run_dir(o: PredictOptions, source: "Source", out: Path) -> list[Path]:
    """Refuse a run folder whose outputs would overwrite an input (before anything is written), then remove
    the temporary files killed runs left where this run writes; returns those removed."""
    from poseapp.outputs import check_outputs_apart
    from poseapp.sinks import remove_stale_temps

    others = [Path(p) for p in (o.boxes_file, o.pose_model) if p and Path(p).is_file()]
    planned = check_outputs_apart(source, out, media=o.save_media, keypoints=o.save_json, table=o.save_csv,
                                  parquet=o.save_parquet, other_inputs=others)
    return remove_stale_temps(sorted({p.parent for p in planned} | {out}))


def tracks(o: PredictOptions, source: "Source") -> bool:
    """Whether a run of ``source`` tracks: as ``o.track`` says, else for videos and streams, and whenever
    smoothing or colouring by track."""
    if o.track is not None:
        return o.track
    return source.kind in ("video", "stream") or o.smooth != "none" or o.color_by == "track"


def video_options(o: PredictOptions, source: "Source") -> "VideoOptions":
    from poseapp.pipeline import VideoOptions

    return VideoOptions(det_every=o.det_every, track=tracks(o, source), track_buffer=o.track_buffer, smooth=o.smooth,
                        min_cutoff=o.smooth_min_cutoff, beta=o.smooth_beta, d_cutoff=o.smooth_d_cutoff,
                        window=o.smooth_window, order=o.smooth_order, kpt_thr=o.kpt_thr,
                        max_latency=o.max_latency / 1000, keep_all=o.stream_buffer)


def _build_pipeline(o: PredictOptions, device: str, warn: Callable[[str], None], source: "Source") -> "Pipeline":
    """The pose model resolved once (recipe errors before any weights load), its boxes, then the weights."""
    return pipeline_for(*build_models(o, device, warn), o, source, warn)


def build_models(o: PredictOptions, device: str,
                 warn: Callable[[str], None]) -> tuple["TopDownEstimator", "Detector"]:
    """The pose model and its box source as ``o`` gives them: the model resolved first (recipe errors before
    any weights load), its boxes (``detector_for``), then the weights."""
    import poseapp.create

    try:
        model = poseapp.create.resolve_model(o.pose_model, o.pose_arch, o.pose_recipe)
        _check_kpt_thr(o.kpt_thr, model.recipe, warn)
        detector = detector_for(o, model.recipe, device)
        estimator = poseapp.create.create_model(model, device=device, half=o.half, backend=o.backend,
                                                precision=o.precision, threads=o.threads, batch_size=o.batch_size,
                                                flip_test=o.flip_test, offline=o.offline)
    except PoseAppError as e:
        raise e.renamed(_RENAMED)
    return estimator, detector


def pipeline_for(estimator: "TopDownEstimator", detector: "Detector", o: PredictOptions, source: "Source",
                 warn: Callable[[str], None]) -> "Pipeline":
    """The engine for one source: its VideoOptions (``video_options``), with a warning where one does nothing
    there (``det_every`` with free boxes, savgol's delay on a stream)."""
    from poseapp.boxes import BoxesFile, WholeFrameDetector
    from poseapp.pipeline import Pipeline

    video = video_options(o, source)
    if video.smooth == "savgol" and source.kind == "stream":
        warn(f"{arg('smooth')} savgol holds each frame of a stream back {video.window // 2} frames (its window's "
             f"centre): {arg('smooth')} one-euro smooths with no delay")
    if video.det_every > 1 and isinstance(detector, (WholeFrameDetector, BoxesFile)):
        warn(f"{arg('det_every')} {video.det_every} is ignored: the boxes come from "
             f"{arg('boxes_file') if isinstance(detector, BoxesFile) else 'the whole frame'} at no cost, so every "
             f"frame takes its own")
        video = replace(video, det_every=1)
    return Pipeline(estimator, detector, video)


def detector_for(o: PredictOptions, recipe: "Recipe", device: str) -> "Detector":
    """The box source the options give ``recipe``'s model (``create_detector``: its data set's default boxes,
    or boxes_file, face_from, det_classes). Option errors are raised before any model loads."""
    from poseapp.boxes import create_detector

    try:
        return create_detector(
            recipe, det_model=o.det_model, classes=o.det_classes, boxes_file=o.boxes_file, face_from=o.face_from,
            face_from_arch=o.face_from_arch, face_from_thr=o.face_from_thr, conf=o.det_conf,
            iou=o.det_iou, max_det=o.max_det, imgsz=o.img_size, device=device, half=o.half, batch_size=o.batch_size,
            flip_test=o.flip_test, trusted=tuple(o.trust_checkpoint), offline=o.offline)
    except PoseAppError as e:
        raise e.renamed(_RENAMED)


def _check_kpt_thr(thr: float, recipe: "Recipe", warn: Callable[[str], None]) -> None:
    """Warn when kpt_thr lies outside the range of the model's keypoint scores (it would draw all or none)."""
    from poseapp.codecs import score_range

    low, high = score_range(recipe.codec)
    if not low <= thr <= high:
        effect = "nothing is drawn" if thr > high else "every keypoint is drawn, however unsure"
        warn(f"{arg('kpt_thr')} {thr:g} is outside the keypoint scores of {recipe.name} ({low:g} to {high:g}): "
             f"{effect}")


def _stream(pipeline: "Pipeline", source: "Source", window: "Window | None", o: PredictOptions,
            report: RunReport) -> None:
    """Every frame through the pipeline into the writers and the window, counted into ``report``."""
    from contextlib import ExitStack

    from tqdm import tqdm

    from poseapp.outputs import open_outputs

    meta = {"model": pipeline.estimator.recipe.name}
    with ExitStack() as stack:
        if window is not None:
            stack.enter_context(window)
        stack.enter_context(source)
        outputs = stack.enter_context(open_outputs(source, report.out, media=o.save_media, keypoints=o.save_json,
                                                   table=o.save_csv, parquet=o.save_parquet, meta=meta))
        single = source.kind == "image" and (source.expected_frames or 0) <= 1
        bar = stack.enter_context(tqdm(total=source.expected_frames, unit="frame", disable=single,
                                       dynamic_ncols=True, leave=False))
        stream_into(pipeline, source, outputs, o, report, window=window, progress=bar.update)


def stream_into(pipeline: "Pipeline", source: "Source", outputs: "Outputs", o: PredictOptions, report: RunReport, *,
                window: "Window | None" = None, progress: Callable[[int], object] | None = None) -> None:
    """Every frame of ``source`` through ``pipeline`` into ``outputs`` (drawn as ``o`` says when a writer or
    the window takes the picture), counted into ``report`` once written; ``progress(1)`` after each frame."""
    from poseapp.drawing import draw
    from poseapp.interrupts import atomic

    results = pipeline(source)  # closed below: its threads stop before the caller closes the source
    seen: set[int] = set()
    try:
        for result in results:
            annotated = None
            if outputs.needs_image or window is not None:
                annotated = draw(result.frame.image, result.poses, kpt_thr=o.kpt_thr, radius=o.radius,
                                 thickness=o.thickness, draw_bbox=o.draw_bbox, color_by=o.color_by)
            with atomic():  # a signal waits for the frame to be in every file, and counted
                outputs.write(result, annotated)
                # counted once written: a run stopped now reports what its files hold
                report.frames += 1
                report.detector_frames += result.detected
                report.instances += len(result)
                report.pose_time += result.timings.get("pose", 0.0)
                report.det_time += result.timings.get("detect", 0.0)
                if result.track_ids is not None:
                    seen.update(result.track_ids[result.track_ids >= 0].tolist())
                    report.tracks = len(seen)
            if progress is not None:
                progress(1)
            if window is not None and not window.show(annotated):
                break
    finally:
        results.close()  # the engine's threads end here, so what they counted is final
        report.dropped = pipeline.stats.dropped


def _abandon(source: "Source", window: "Window | None", created: Path | None) -> None:
    """A run that fails: release the capture and window, and remove the folders it created if they hold
    nothing (so a bad pose model or a single unreadable image does not use up runs/predictN)."""
    source.close()
    if window is not None:
        window.close()
    if created is not None:
        remove_if_empty(created)


def first_missing(path: Path) -> Path | None:
    """The top-most folder of ``path`` that does not exist yet (what creating ``path`` would create)."""
    missing = None
    for folder in [path, *path.parents]:
        if folder.exists():
            break
        missing = folder
    return missing


def remove_if_empty(folder: Path) -> None:
    """Remove ``folder`` and its sub-folders when no file is left in them."""
    import os

    for dirpath, _, _ in sorted(os.walk(folder), key=lambda entry: -len(entry[0])):
        try:
            os.rmdir(dirpath)  # only an empty folder
        except OSError:
            pass
