"""``predict``: any source through the detector and the pose model to annotated media and keypoint files."""
from __future__ import annotations

import signal
import sys
from typing import TYPE_CHECKING, Any

import click

from poseapp.boxes.yolo import DEFAULT_DETECTOR
from poseapp.cli.common import Finite, configure_logging, fail, offline_from_env, option_flags, warn
from poseapp.errors import render
from poseapp.job import DEFAULT_POSE_MODEL
from poseapp.drawing import COLOR_BY
from poseapp.engine.smoothing import SMOOTHERS
from poseapp.engine.tracking import DEFAULT_TRACK_BUFFER
from poseapp.pipeline import DEFAULT_MAX_LATENCY
from poseapp.runtimes.base import BACKENDS, PRECISION_CHOICES

if TYPE_CHECKING:
    from poseapp.job import PredictOptions, RunReport

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
              help="Zoo name (python infer.py models), a checkpoint path, or an .onnx/.xml model file.")
@click.option("--pose-arch", default=None, help="For a checkpoint or model file: the zoo name whose recipe it "
              "follows (default: the zoo entry whose file name it bears, or an export's own recipe).")
@click.option("--pose-recipe", default=None, type=click.Path(dir_okay=False),
              help="For an .onnx/.xml pose model without a poseapp recipe: a recipe JSON file (input size, "
                   "normalisation, codec; see README) instead of --pose-arch.")
@click.option("--det-model", default=DEFAULT_DET_MODEL, show_default=True,
              help="ultralytics YOLO detector (.pt, .onnx, OpenVINO folder, or a name it downloads); 'none' = whole "
              "frame.")
@click.option("--trust-checkpoint", multiple=True, metavar="FILE", type=click.Path(exists=True),
              help="Let ultralytics load this detector file in full (unpickle a .pt, run a TorchScript): RUNS ANY "
              "CODE IN IT. Without it a .pt loads weights-only, through an allow-list of model classes, and only "
              ".onnx and OpenVINO exports are read by path (README: Security).")
@click.option("--det-conf", default=None, type=Finite(0, 1), show_default="0.25; a classic YOLOv5 checkpoint: 0.4",
              help="Detector confidence threshold.")
@click.option("--det-iou", default=None, type=Finite(0, 1), show_default="0.7; a classic YOLOv5 checkpoint: 0.5",
              help="Detector NMS IoU threshold.")
@click.option("--max-det", default=300, show_default=True, type=click.IntRange(1), help="Most boxes per frame.")
@click.option("--img-size", "--imgsz", "img_size", default=640, show_default=True, type=click.IntRange(32, 4096),
              help="Detector input size in pixels (ultralytics' imgsz; a multiple of 32, else the detector rounds it "
              "up). An export made for one size keeps its own.")
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
@click.option("--half", is_flag=True, help="float16 inference (CUDA): --precision fp16.")
@click.option("--backend", default="auto", show_default=True, type=click.Choice(BACKENDS, case_sensitive=False),
              help="Pose network runtime; auto: the fastest at fp32 results on this machine (measured once, kept in "
                   "the weights cache).")
@click.option("--precision", default=None, type=click.Choice(PRECISION_CHOICES, case_sensitive=False),
              show_default="fp32; an export's own",
              help="bf16 on CPUs with AMX/AVX512-BF16 (or CUDA), fp16 on CUDA; fp32 gives the published accuracy.")
@click.option("--threads", default=None, type=click.IntRange(1),
              show_default="the CPUs this process may use; torch: its own setting",
              help="CPU threads for the pose network.")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(1),
              help="Crops per forward pass (with the flip test, the pass also takes their mirror images).")
@click.option("--no-flip", is_flag=True, help="Turn off the flip test (on in the published configs).")
@click.option("--out", "out_dir", default="runs/predict", show_default=True, type=click.Path(file_okay=False),
              help="Output folder (runs/predict, runs/predict2, ... unless --exist-ok).")
@click.option("--exist-ok", is_flag=True, help="Write into --out even if it exists.")
@click.option("--json", "save_json", is_flag=True, help="Save keypoints (JSON for images, JSON Lines for videos).")
@click.option("--csv", "save_csv", is_flag=True, help="Save a CSV table: a row per frame and instance (frame, time, "
              "track_id, box, x/y/score per keypoint).")
@click.option("--parquet", "save_parquet", is_flag=True, help="Save an Apache Parquet table: a row per frame and "
              "instance, keypoints as lists (predictions.parquet, or <stem>.parquet for a video).")
@click.option("--no-save", is_flag=True, help="Do not save annotated images/videos (use with --json).")
@click.option("--show", is_flag=True, help="Show results in a window (needs a display); q quits.")
@click.option("--kpt-thr", default=0.3, show_default=True, type=Finite(), help="Draw keypoints scoring at least this.")
@click.option("--radius", default=None, type=click.IntRange(1), help="Keypoint radius in pixels (default: by image size).")
@click.option("--thickness", default=None, type=click.IntRange(1),
              help="Link thickness in pixels (default: by image size).")
@click.option("--draw-bbox", is_flag=True, help="Draw the boxes too.")
@click.option("--color-by", default=None, type=click.Choice(COLOR_BY, case_sensitive=False),
              show_default="track when tracking, else keypoint",
              help="Colour each instance by its track ID (the ID written by it), or each keypoint and link by "
                   "the keypoint set's colours.")
@click.option("--det-every", default=1, show_default=True, type=click.IntRange(1), metavar="N",
              help="Run the detector on every Nth frame; between, each instance's box comes from its keypoints "
                   "in the frame before (the detector runs early when one is lost).")
@click.option("--track/--no-track", default=None, show_default="on for videos and streams",
              help="Give each instance a track ID that stays with it across frames (ByteTrack with keypoints).")
@click.option("--track-buffer", default=DEFAULT_TRACK_BUFFER, show_default=True, type=click.IntRange(1),
              metavar="FRAMES",
              help="Frames a lost instance keeps its ID (it gets it back if it returns near where it left).")
@click.option("--smooth", default="none", show_default=True, type=click.Choice(SMOOTHERS, case_sensitive=False),
              help="Smooth each track's keypoints: one-euro (online, no delay) or savgol (a centred window, "
                   "--smooth-window // 2 frames of delay). The JSON keeps the model's in keypoints_raw.")
@click.option("--smooth-min-cutoff", default=1.0, show_default=True, type=Finite(0, min_open=True), metavar="HZ",
              help="One-Euro: the cutoff of a still keypoint (lower: smoother).")
@click.option("--smooth-beta", default=0.05, show_default=True, type=Finite(0), metavar="PER_PX_S",
              help="One-Euro: how fast the cutoff rises with speed (higher: less lag when moving).")
@click.option("--smooth-d-cutoff", default=1.0, show_default=True, type=Finite(0, min_open=True), metavar="HZ",
              help="One-Euro: the cutoff of the speed estimate.")
@click.option("--smooth-window", default=9, show_default=True, type=click.IntRange(3), metavar="FRAMES",
              help="Savitzky-Golay: the window (odd).")
@click.option("--smooth-order", default=2, show_default=True, type=click.IntRange(0),
              help="Savitzky-Golay: the polynomial order (below the window).")
@click.option("--recursive", is_flag=True, help="Search folders recursively.")
@click.option("--vid-stride", default=1, show_default=True, type=click.IntRange(1), help="Use every Nth video frame.")
@click.option("--max-frames", default=None, type=click.IntRange(1), help="Stop after N frames.")
@click.option("--max-pixels", default=16384 * 16384, show_default=True, type=click.IntRange(1),
              help="Skip images with more pixels (read from the header, before decoding): decompression bombs.")
@click.option("--max-latency", default=DEFAULT_MAX_LATENCY * 1000, show_default=True, type=Finite(0, 60000),
              metavar="MS",
              help="Live sources: how long a frame may wait for later frames to share its forward pass "
              "(0: it runs with the frames already waiting).")
@click.option("--stream-buffer", is_flag=True, help="Live sources: keep up to 30 frames waiting when the engine "
              "falls behind, then the reader waits (default: only the newest waits, the others are dropped and "
              "counted).")
@click.option("--stream-timeout", default=10.0, show_default=True, type=Finite(0, 86400, min_open=True),
              help="Seconds a URL may take to answer, and a stream between two frames, before it is given up.")
@click.option("--ray", "ray", is_flag=True, help="Run on Ray: a local instance on this machine, or the cluster of "
              "--ray-address. The source's files are shared out to --workers actors (README: Scale out).")
@click.option("--ray-address", default=None, metavar="ADDRESS", help="A running Ray cluster (host:6379, "
              "ray://host:10001 or auto); implies --ray.")
@click.option("--workers", default=None, type=click.IntRange(1), show_default="one per GPU slot, else per 2 CPUs",
              help="--ray: actors, each holding one detector and one pose model.")
@click.option("--gpus-per-worker", default=0.0, show_default=True, type=Finite(0), metavar="G",
              help="--ray: GPUs per actor (0.5: two share one); 0 runs on the CPUs.")
@click.option("--cpus-per-worker", default=None, type=Finite(0, min_open=True), metavar="C",
              show_default="the cluster's CPUs shared out, half a CPU kept for reading",
              help="--ray: CPUs per actor (also its pose network's threads unless --threads).")
@click.option("--shard-size", default=32, show_default=True, type=click.IntRange(1), metavar="IMAGES",
              help="--ray: images per task and per shard.")
@click.option("--segment-frames", default=3000, show_default=True, type=click.IntRange(1), metavar="FRAMES",
              help="--ray: frames per task of a long video, when its frames may be split (--no-track, no --det-every, "
                   "no --smooth, --no-save).")
@click.option("--resume", is_flag=True, help="--ray: finish the run in --out itself, skipping the tasks it already "
              "finished with the same options and inputs.")
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
    from poseapp.interrupts import Terminated, ending_signals
    from poseapp.job import RunReport, run_predict

    distributed = opts["ray"] or opts["ray_address"] is not None
    report = RunReport()
    try:
        with ending_signals():
            try:
                options = predict_options(opts)
                if distributed:
                    from poseapp.distributed import DistributedReport, run_distributed

                    report = DistributedReport()
                    run_distributed(options, ray_options(opts), report, warn=lambda text: warn(render(text, _flags())))
                else:
                    _check_single_process(opts)
                    run_predict(options, report, warn=lambda text: warn(render(text, _flags())))
            except (KeyboardInterrupt, Terminated, PoseAppError):
                if report.frames:  # what was done before it stopped, and where it is
                    _summary(report, opts)
                raise
    except PoseAppError as e:
        fail(e.render(_flags()), opts["verbose"])
    except KeyboardInterrupt:
        click.echo("interrupted: outputs written so far are saved", err=True)
        sys.exit(130)
    except Terminated as e:
        click.echo(f"terminated by {signal.Signals(e.signum).name}: outputs written so far are saved", err=True)
        sys.exit(128 + e.signum)
    _summary(report, opts)
    sys.exit(1 if report.failures else 0)


_RAY_ONLY = {"workers": None, "gpus_per_worker": 0.0, "cpus_per_worker": None, "shard_size": 32,
             "segment_frames": 3000, "resume": False}


def _check_single_process(opts: dict[str, Any]) -> None:
    """A --ray flag given without --ray would do nothing: one line saying so."""
    from poseapp.errors import PoseAppError

    given = [f"--{name.replace('_', '-')}" for name, default in _RAY_ONLY.items() if opts[name] != default]
    if given:
        raise PoseAppError(f"{', '.join(given)} only act(s) with --ray (or --ray-address): add --ray, or drop "
                           f"{'it' if len(given) == 1 else 'them'}")


def ray_options(opts: dict[str, Any]) -> Any:
    """The parsed --ray flags as a RayOptions."""
    from poseapp.distributed import RayOptions

    return RayOptions(address=opts["ray_address"], workers=opts["workers"], gpus_per_worker=opts["gpus_per_worker"],
                      cpus_per_worker=opts["cpus_per_worker"], shard_size=opts["shard_size"],
                      segment_frames=opts["segment_frames"], resume=opts["resume"])


def predict_options(opts: dict[str, Any]) -> "PredictOptions":
    """The parsed flags as the one value the library's run takes."""
    from poseapp.job import PredictOptions

    classes = None if opts["det_classes"] is None else [w.strip() for w in opts["det_classes"].split(",") if w.strip()]
    return PredictOptions(
        source=opts["source"], pose_model=opts["pose_model"], pose_arch=opts["pose_arch"],
        pose_recipe=opts["pose_recipe"], det_model=opts["det_model"],
        det_conf=opts["det_conf"], det_iou=opts["det_iou"], max_det=opts["max_det"], img_size=opts["img_size"],
        det_classes=classes,
        boxes_file=opts["boxes_file"], face_from=opts["face_from"], face_from_arch=opts["face_from_arch"],
        face_from_thr=opts["face_from_thr"], trust_checkpoint=tuple(opts["trust_checkpoint"]), device=opts["device"],
        half=opts["half"], backend=opts["backend"], precision=opts["precision"], threads=opts["threads"],
        batch_size=opts["batch_size"], flip_test=False if opts["no_flip"] else None,
        out_dir=opts["out_dir"], exist_ok=opts["exist_ok"], save_media=not opts["no_save"],
        save_json=opts["save_json"], save_csv=opts["save_csv"], save_parquet=opts["save_parquet"], show=opts["show"],
        kpt_thr=opts["kpt_thr"],
        radius=opts["radius"], thickness=opts["thickness"], draw_bbox=opts["draw_bbox"], color_by=opts["color_by"],
        det_every=opts["det_every"], track=opts["track"], track_buffer=opts["track_buffer"], smooth=opts["smooth"],
        smooth_min_cutoff=opts["smooth_min_cutoff"], smooth_beta=opts["smooth_beta"],
        smooth_d_cutoff=opts["smooth_d_cutoff"], smooth_window=opts["smooth_window"],
        smooth_order=opts["smooth_order"], max_latency=opts["max_latency"], stream_buffer=opts["stream_buffer"],
        recursive=opts["recursive"],
        vid_stride=opts["vid_stride"], max_frames=opts["max_frames"], max_pixels=opts["max_pixels"],
        stream_timeout=opts["stream_timeout"], offline=opts["offline"] or offline_from_env())


def _flags() -> dict[str, str]:
    """Each PredictOptions field an error may name -> the flag that sets it (``--boxes`` for boxes_file)."""
    return {**option_flags(predict), "flip_test": "--no-flip", "save_media": "--no-save", "no_track": "--no-track"}


def _summary(report: "RunReport", opts: dict[str, Any]) -> None:
    """The run in a few lines on stderr: counts and speeds, where the results are, warnings, what failed."""
    elapsed, frames, people = report.elapsed, report.frames, report.instances
    crops_per_s = people / report.pose_time if report.pose_time > 0 else 0.0
    det_ms = 1000 * report.det_time / frames if frames else 0.0
    click.echo(f"{report.source} ({report.kind}) with {report.model}: {frames} frame(s), {people} instance(s) in "
               f"{elapsed:.1f}s ({frames / elapsed if elapsed else 0:.2f} frames/s; detector {det_ms:.0f} ms/frame, "
               f"pose {crops_per_s:.1f} crops/s)", err=True)
    video = []
    if report.detector_frames and report.detector_frames < frames:
        video.append(f"detector on {report.detector_frames} of {frames} frames")
    if report.tracks:
        video.append(f"{report.tracks} track(s)")
    if report.dropped:
        video.append(f"{report.dropped} live frame(s) dropped to keep up (--stream-buffer keeps them)")
    if video:
        click.echo("; ".join(video), err=True)
    if hasattr(report, "retried"):  # a --ray run
        click.echo(_cluster_line(report), err=True)
    if report.out is not None:
        click.echo(f"results saved to {report.out}" if report.saved else "nothing saved", err=True)
    elif frames:
        warn("--no-save without --json, --csv or --parquet saved nothing (add --json to keep the keypoints)")
    if report.stale:
        who = "a killed earlier run or worker" if hasattr(report, "retried") else "a killed earlier run"
        click.echo(f"removed {len(report.stale)} temporary file(s) {who} left in {report.out}: "
                   f"{', '.join(p.name for p in report.stale[:5])}", err=True)
    if opts["boxes_file"] and frames and not people:
        warn(f"no box of --boxes {opts['boxes_file']} belongs to these frames (boxes are matched by file name, "
              "stem, or image id = the file's number)")
    if report.failures:
        click.secho(f"{len(report.failures)} input(s) failed:", fg="yellow", err=True)
        for path, reason in report.failures:
            click.echo(f"  {path}: {render(reason, _flags())}", err=True)


def _cluster_line(report: Any) -> str:
    """What a --ray run did with its inputs and tasks, in one line."""
    pending = report.inputs - report.done_inputs - report.failed_inputs
    parts = [f"ray: {report.inputs} input(s): {report.done_inputs} done, {report.failed_inputs} failed"
             + (f", {pending} not finished (--resume finishes them)" if pending else "")]
    on = f" on {report.workers} worker(s)" if report.workers else ""
    parts.append(f"{report.tasks} task(s){on}")
    if report.skipped:
        parts.append(f"{report.skipped} done before (--resume)")
    parts.append(f"{report.retried} retried by Ray" if report.retried else "none retried")
    return "; ".join(parts)
