"""``predict``: any source through the detector and the pose model to annotated media and keypoint files."""
from __future__ import annotations

import os
import signal
import sys
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Iterator

import click

from poseapp.boxes.yolo import DEFAULT_DETECTOR
from poseapp.cli.common import Finite, configure_logging, fail, go_offline, warn

DEFAULT_POSE_MODEL = "hrnet-w32_coco-256x192"
DEFAULT_DET_MODEL = DEFAULT_DETECTOR


_BOX_KINDS = {  # what each kind of default box is, for predict --help
    "person": "the detector's person class.",
    "animals": "the detector's classes of those animals.",
    "whole frame": "the whole frame (no detector class fits).",
    "face": "the whole frame.",
}
_BOX_OPTIONS = ("--det-classes NAMES picks the detector classes for any model, --boxes FILE gives your own boxes, "
                "and for a face model --face-from MODEL makes a face box per detected person from a COCO person "
                "model's head keypoints (nose, eyes, ears). python infer.py models shows each model's default.")


class PredictCommand(click.Command):
    """``predict``; its --help ends with each data set's default boxes, read from poseapp.boxes' table."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        import textwrap

        from poseapp.boxes import box_rules

        groups: dict[str, list[str]] = {}
        for rule in box_rules().values():
            named = f"{rule.title} ({', '.join(rule.class_names)})" if rule.kind == "animals" else rule.title
            groups.setdefault(rule.kind, []).append(named)
        wrap = textwrap.TextWrapper(width=formatter.width, break_on_hyphens=False, break_long_words=False,
                                    subsequent_indent=" " * 15)  # flags such as --det-classes stay whole
        lines = ["", "Default boxes, by the pose model's data set:"]
        for kind, names in groups.items():
            wrap.initial_indent = f"  {kind:<12} "
            lines += wrap.wrap(f"{', '.join(names)}: {_BOX_KINDS[kind]}")
        wrap.initial_indent = wrap.subsequent_indent = "  "
        lines += ["", *wrap.wrap(_BOX_OPTIONS)]
        formatter.write("\n".join(lines) + "\n")
        super().format_epilog(ctx, formatter)


@click.command(cls=PredictCommand)
@click.option("--source", "-s", required=True, help="Image, folder, glob, .txt list, video (an animated GIF is one), "
              "webcam:N (or a bare index), image URL or stream URL. An existing path always wins.")
@click.option("--pose-model", "-m", default=DEFAULT_POSE_MODEL, show_default=True,
              help="Zoo name (python infer.py models) or a checkpoint path.")
@click.option("--pose-arch", default=None, help="For a checkpoint path: the zoo name whose recipe it follows "
              "(default: the zoo entry whose file name it bears).")
@click.option("--det-model", default=DEFAULT_DET_MODEL, show_default=True,
              help="ultralytics YOLO detector (.pt, .onnx, OpenVINO folder, or a name it downloads); 'none' = whole "
              "frame.")
@click.option("--trust-checkpoint", multiple=True, metavar="FILE", type=click.Path(exists=True),
              help="Let ultralytics load this detector file in full (unpickle a .pt, run a TorchScript): RUNS ANY "
              "CODE IN IT. Without it a .pt loads weights-only, through an allow-list of model classes, and only "
              ".onnx and OpenVINO exports are read by path (README: Security).")
@click.option("--det-conf", default=0.25, show_default=True, type=Finite(0, 1),
              help="Detector confidence threshold.")
@click.option("--det-iou", default=0.7, show_default=True, type=Finite(0, 1),
              help="Detector NMS IoU threshold.")
@click.option("--max-det", default=300, show_default=True, type=click.IntRange(1), help="Most boxes per frame.")
@click.option("--det-classes", default=None, help="Detector classes to keep, names or ids (e.g. person,dog). "
              "Default: by the pose model's data set (below).")
@click.option("--boxes", "boxes_file", default=None, type=click.Path(dir_okay=False),
              help="Precomputed boxes (COCO detection-results JSON) instead of the detector.")
@click.option("--face-from", default=None, metavar="MODEL",
              help="For a face model (WFLW): a COCO person model (zoo name or checkpoint path) whose head "
              "keypoints on the detected persons give the face boxes.")
@click.option("--face-from-arch", default=None, help="For a --face-from checkpoint path: the zoo name whose "
              "recipe it follows (default: the zoo entry whose file name it bears).")
@click.option("--face-from-thr", default=0.3, show_default=True, type=Finite(0, 1),
              help="Head keypoints (nose, eyes, ears) scoring at least this make a face box; a person needs 2.")
@click.option("--device", default="auto", show_default=True,
              help="auto, cpu, cuda, cuda:N (or N) or mps; checked against what this machine has.")
@click.option("--half", is_flag=True, help="float16 inference (CUDA).")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(1), help="Crops per forward pass.")
@click.option("--no-flip", is_flag=True, help="Turn off the flip test (on in the published configs).")
@click.option("--out", "out_dir", default="runs/predict", show_default=True, type=click.Path(file_okay=False),
              help="Output folder (runs/predict, runs/predict2, ... unless --exist-ok).")
@click.option("--exist-ok", is_flag=True, help="Write into --out even if it exists.")
@click.option("--json", "save_json", is_flag=True, help="Save keypoints (JSON for images, JSON Lines for videos).")
@click.option("--no-save", is_flag=True, help="Do not save annotated images/videos (use with --json).")
@click.option("--show", is_flag=True, help="Show results in a window (needs a display); q quits.")
@click.option("--kpt-thr", default=0.3, show_default=True, type=Finite(), help="Draw keypoints scoring at least this.")
@click.option("--radius", default=None, type=click.IntRange(1), help="Keypoint radius in pixels (default: by image size).")
@click.option("--thickness", default=None, type=click.IntRange(1),
              help="Link thickness in pixels (default: by image size).")
@click.option("--draw-bbox", is_flag=True, help="Draw the boxes too.")
@click.option("--recursive", is_flag=True, help="Search folders recursively.")
@click.option("--vid-stride", default=1, show_default=True, type=click.IntRange(1), help="Use every Nth video frame.")
@click.option("--max-frames", default=None, type=click.IntRange(1), help="Stop after N frames.")
@click.option("--max-pixels", default=16384 * 16384, show_default=True, type=click.IntRange(1),
              help="Skip images with more pixels (read from the header, before decoding): decompression bombs.")
@click.option("--stream-timeout", default=10.0, show_default=True, type=Finite(0, 86400, min_open=True),
              help="Seconds a URL may take to answer, and a stream between two frames, before it is given up.")
@click.option("--offline", is_flag=True, help="No network (as POSEAPP_OFFLINE=1): weights must be in the cache; "
              "a zoo name or detector name not yet downloaded is an error instead of a download.")
@click.option("--verbose", "-v", is_flag=True, help="Log details; show tracebacks on errors.")
def predict(**opts: Any) -> None:
    """Detect, estimate keypoints, draw and save them for any source.

    A zoo model (--pose-model NAME) or detector name (--det-model yolo11n.pt) is downloaded into the
    weights cache on first use (weights/, or $POSEAPP_HOME; POSEAPP_MIRROR=https://host/prefix to use a
    mirror), sha256-checked where a hash is published, and never downloaded again.
    """
    configure_logging(opts["verbose"])
    from poseapp.errors import PoseAppError

    go_offline(opts["offline"])

    try:
        with _signals_end_like_ctrl_c():
            code = _predict(opts)
    except PoseAppError as e:
        fail(str(e), opts["verbose"])
    except KeyboardInterrupt:
        click.echo("interrupted: outputs written so far are saved", err=True)
        sys.exit(130)
    except Terminated as e:
        click.echo(f"terminated by {signal.Signals(e.signum).name}: outputs written so far are saved", err=True)
        sys.exit(128 + e.signum)
    sys.exit(code)


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived: unwinds like KeyboardInterrupt, so every writer finalises what it has."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


_END_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


@contextmanager
def _signals_end_like_ctrl_c() -> Iterator[None]:
    """While a run goes on, SIGTERM (kill, docker stop, timeout) and SIGHUP (a closed terminal) raise
    Terminated; repeats are ignored while the outputs are finalised. Outside the main thread (where
    Python cannot take signals) nothing changes."""

    def handler(signum: int, frame: object) -> None:
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        raise Terminated(signum)

    try:  # a signal already ignored (SIGHUP under nohup) stays ignored
        previous = {sig: signal.signal(sig, handler) for sig in _END_SIGNALS
                    if signal.getsignal(sig) is not signal.SIG_IGN}
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _build_detector(opts: dict[str, Any], recipe, device: str):
    """The box source for ``recipe``'s model (``poseapp.create_detector``: its data set's default boxes, or
    --boxes, --face-from, --det-classes). Option errors are raised before any model loads."""
    from poseapp.boxes import create_detector

    return create_detector(
        recipe, det_model=opts["det_model"], classes=_det_classes(opts), boxes_file=opts["boxes_file"],
        face_from=opts["face_from"], face_from_arch=opts["face_from_arch"], face_from_thr=opts["face_from_thr"],
        conf=opts["det_conf"], iou=opts["det_iou"], max_det=opts["max_det"], device=device, half=opts["half"],
        batch_size=opts["batch_size"], flip_test=False if opts["no_flip"] else None,
        trusted=opts["trust_checkpoint"], names=_BOX_FLAGS)


_BOX_FLAGS = {"det_model": "--det-model", "classes": "--det-classes", "boxes_file": "--boxes",
              "face_from": "--face-from", "face_from_arch": "--face-from-arch"}


def _det_classes(opts: dict[str, Any]) -> list[str] | None:
    """--det-classes as a list of names or ids; None when not given."""
    if opts["det_classes"] is None:
        return None
    return [w.strip() for w in opts["det_classes"].split(",") if w.strip()]


def _predict(opts: dict[str, Any]) -> int:
    from poseapp.api import create_model, resolve_device, resolve_recipe
    from poseapp.errors import PoseAppError
    from poseapp.outputs import check_outputs_apart
    from poseapp.sinks import Window, next_run_dir, remove_stale_temps
    from poseapp.sources import open_source

    # cheap checks first: a bad --device, a missing source, an --out that would overwrite an input or
    # cannot be written all fail before any model loads
    opts["out_dir"] = str(Path(opts["out_dir"]).expanduser())  # --out=~/res: the shell leaves ~ to us
    device = resolve_device(opts["device"], half=opts["half"])
    source = open_source(opts["source"], recursive=opts["recursive"], vid_stride=opts["vid_stride"],
                         max_frames=opts["max_frames"], max_pixels=opts["max_pixels"],
                         stream_timeout=opts["stream_timeout"])
    window = out = None
    media, keypoints = not opts["no_save"], opts["save_json"]
    created = _first_missing(Path(opts["out_dir"]))  # the top folder this run creates, if any
    stats = {"frames": 0, "instances": 0, "pose_time": 0.0, "det_time": 0.0, "start": time.perf_counter(),
             "stale": [], "boxes_file": opts["boxes_file"]}
    try:
        window = Window(f"poseapp: {opts['source']}") if opts["show"] else None
        if media or keypoints:
            out = next_run_dir(Path(opts["out_dir"]), exist_ok=opts["exist_ok"])
            if created is None and not opts["exist_ok"] and out != Path(opts["out_dir"]):
                created = out  # runs/predict2, beside an existing runs/predict
            others = [Path(p) for p in (opts["boxes_file"], opts["pose_model"]) if p and Path(p).is_file()]
            planned = check_outputs_apart(source, out, media=media, keypoints=keypoints, other_inputs=others)
            stats["stale"] = remove_stale_temps(sorted({p.parent for p in planned} | {out}))

        recipe, _ = resolve_recipe(opts["pose_model"], opts["pose_arch"])  # no weights yet: option errors first
        _check_kpt_thr(opts["kpt_thr"], recipe)
        detector = _build_detector(opts, recipe, device)
        estimator = create_model(opts["pose_model"], arch=opts["pose_arch"], device=device, half=opts["half"],
                                 batch_size=opts["batch_size"], flip_test=False if opts["no_flip"] else None)
        from poseapp.pipeline import Pipeline

        pipeline = Pipeline(estimator, detector)
        try:
            _run(pipeline, source, out, window, opts, stats)
        except (KeyboardInterrupt, Terminated, PoseAppError):
            if stats["frames"]:  # what was done before it stopped, and where it is
                _summary(stats, source, out, estimator.recipe.name)
            raise
    except BaseException:
        _abandon(source, window, created)
        raise
    _summary(stats, source, out, estimator.recipe.name)
    if created is not None:
        _remove_if_empty(created)
    return 1 if source.failures else 0


def _first_missing(path: Path) -> Path | None:
    """The top-most folder of ``path`` that does not exist yet (what creating ``path`` would create)."""
    missing = None
    for folder in [path, *path.parents]:
        if folder.exists():
            break
        missing = folder
    return missing


def _check_kpt_thr(thr: float, recipe) -> None:
    """Warn when --kpt-thr lies outside the range of the model's keypoint scores (it would draw all or none)."""
    from poseapp.codecs import score_range

    low, high = score_range(recipe.codec)
    if low <= thr <= high:
        return
    effect = "nothing is drawn" if thr > high else "every keypoint is drawn, however unsure"
    warn(f"--kpt-thr {thr:g} is outside the keypoint scores of {recipe.name} ({low:g} to {high:g}): {effect}")


def _abandon(source, window, created: Path | None) -> None:
    """A run that fails: release the capture and window, and remove the folders it created if they hold
    nothing (so a bad --pose-model or a single unreadable image does not use up runs/predictN)."""
    source.close()
    if window is not None:
        window.close()
    if created is not None:
        _remove_if_empty(created)


def _remove_if_empty(folder: Path) -> None:
    """Remove ``folder`` and its sub-folders when no file is left in them."""
    for dirpath, _, _ in sorted(os.walk(folder), key=lambda entry: -len(entry[0])):
        try:
            os.rmdir(dirpath)  # only an empty folder
        except OSError:
            pass


def _run(pipeline, source, out: Path | None, window, opts: dict[str, Any], stats: dict[str, Any]) -> None:
    """Stream frames through the pipeline into the sinks, counting into ``stats`` for the summary."""
    from tqdm import tqdm

    from poseapp.drawing import draw
    from poseapp.outputs import keypoints_output_name
    from poseapp.sinks import ImageWriter, JsonlWriter, JsonWriter, VideoWriter, video_output_name

    save_media = out is not None and not opts["no_save"]
    meta = {"model": pipeline.estimator.recipe.name}
    with ExitStack() as stack:
        if window is not None:
            stack.enter_context(window)
        stack.enter_context(source)
        media = json_sink = None
        if source.kind == "images":
            if save_media:
                media = stack.enter_context(ImageWriter(out, root=getattr(source, "root", None)))
            if opts["save_json"]:
                json_sink = stack.enter_context(JsonWriter(out / keypoints_output_name(source), meta))
        else:
            if save_media:  # the written frames play at the source's speed: fps / stride; the size is the
                # first frame's (a capture may report the size before its rotation metadata is applied)
                fps = source.fps / opts["vid_stride"] if source.fps else None
                media = stack.enter_context(VideoWriter(out / video_output_name(source.stem), fps))
            if opts["save_json"]:
                json_sink = stack.enter_context(JsonlWriter(out / keypoints_output_name(source), meta))
        bar = stack.enter_context(tqdm(total=source.expected_frames, unit="frame", disable=source.kind == "images"
                                       and (source.expected_frames or 0) <= 1, dynamic_ncols=True, leave=False))
        for result in pipeline(source):
            stats["frames"] += 1
            stats["instances"] += len(result)
            stats["pose_time"] += result.timings.get("pose", 0.0)
            stats["det_time"] += result.timings.get("detect", 0.0)
            annotated = None
            if media is not None or window is not None:
                annotated = draw(result.frame.image, result.poses, kpt_thr=opts["kpt_thr"], radius=opts["radius"],
                                 thickness=opts["thickness"], draw_bbox=opts["draw_bbox"])
            if media is not None:
                if source.kind == "images":
                    media.write(result.frame, annotated)
                else:
                    media.write(annotated)
            if json_sink is not None:
                json_sink.write(result)
            bar.update(1)
            if window is not None and not window.show(annotated):
                break


def _summary(stats: dict[str, Any], source, out: Path | None, model: str) -> None:
    elapsed = time.perf_counter() - stats["start"]
    frames, people = stats["frames"], stats["instances"]
    crops_per_s = people / stats["pose_time"] if stats["pose_time"] > 0 else 0.0
    det_ms = 1000 * stats["det_time"] / frames if frames else 0.0
    click.echo(f"{source.spec} ({source.kind}) with {model}: {frames} frame(s), {people} instance(s) in "
               f"{elapsed:.1f}s ({frames / elapsed if elapsed else 0:.2f} frames/s; detector {det_ms:.0f} ms/frame, "
               f"pose {crops_per_s:.1f} crops/s)", err=True)
    if out is not None:
        click.echo(f"results saved to {out}" if any(p.is_file() for p in out.rglob("*")) else "nothing saved",
                   err=True)
    elif frames:
        warn("--no-save without --json saved nothing (add --json to keep the keypoints)")
    if stats["stale"]:
        click.echo(f"removed {len(stats['stale'])} temporary file(s) a killed earlier run left in {out}: "
                   f"{', '.join(p.name for p in stats['stale'][:5])}", err=True)
    if stats.get("boxes_file") and frames and not people:
        warn(f"no box of --boxes {stats['boxes_file']} belongs to these frames (boxes are matched by file name, "
              "stem, or image id = the file's number)")
    if source.failures:
        click.secho(f"{len(source.failures)} input(s) failed:", fg="yellow", err=True)
        for path, reason in source.failures:
            click.echo(f"  {path}: {reason}", err=True)
