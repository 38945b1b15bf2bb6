#!/usr/bin/env python3
"""The video engine end to end: crops/s against today's per-frame path and MMPose, peak memory, a smoothing plot.

``speed`` (the default): two synthetic clips of real people over a real background (tests/fixtures/clips.py,
the clips of the engine's tests, here at 1280x720): ``walking`` (one person, the common case) and ``group``
(three, crossing now and then). One worker process per contender loads its model once; the driver then asks
them in turn, round after round, to run a whole clip (as ../shared/peers/side_by_side.py does), so all see
the same machine load. A round decodes the clip and ends with every frame's keypoints:

  mmpose        MMPose 1.3.2's per-image top-down path (its own venv): per frame,
                ``mmpose.apis.inference_topdown(model, frame, boxes)`` with the boxes the real detector gave
                that frame. Its venv has no detector, so the detector's own time (the ``detector`` worker:
                YOLOv8n int8 ONNX on every frame, decoding not counted) is added to each of its rounds.
  per-frame     poseapp before the engine: ``Pipeline.process([frame])`` per frame (detector, then pose, one
                thread, no batching across frames).
  engine        ``Pipeline(..., VideoOptions(det_every=1, track=True))``: threaded stages, crops of consecutive
                frames batched, ByteTrack IDs.
  engine-every5 the same with ``det_every=5``.
  bf16, bf16-every5  the engine at ``precision="bf16"`` (CPUs with AMX/AVX512-BF16; left out elsewhere).

Every contender runs the same checkpoint: the coco_hrnet-w32_hm parity checkpoint (random weights in the
published layout, rebuilt by ../shared/parity/make_checkpoint.py; trained HRNet weights cannot be downloaded
here, and speed does not depend on the weights' values), recipe hrnet-w32_coco-256x192, flip test on (its
config's default). poseapp takes its default backend (``auto``). Reported per clip and contender: crops/s
(instances / median round seconds), the ratio to MMPose and to per-frame, the frames the detector ran on, the
largest keypoint difference to MMPose (the engine at fp32 on the same boxes must agree to ~1e-3 px), and the
worker's peak RSS. With random weights the keypoints ``--det-every`` carries boxes from are not a person's
(the boxes drift, and instances are often lost, so the detector runs early more than it would with trained
weights): at det_every 5 the speed is what is measured, the keypoints are not compared.

``memory``: peak RSS (``os.wait4``) of ``python infer.py`` on 300 and 3,000 full-size frames (1280x720,
``walking``), the whole-frame box and a small network (coco_mobilenetv2_rle parity checkpoint), JSON Lines
written, after a 30-frame warm-up run that leaves backend auto's measurement in the run's own weights cache:
memory must not grow with the video's length.

``plot``: one keypoint's x over time on the ``shaking`` clip (the racer stands still, pasted a few pixels off
each frame), raw against One-Euro and Savitzky-Golay, with the trained Ultralight-Nano-SimplePose network
(../shared/weights) and the real detector; writes bench/smoothing.png (matplotlib: bench/requirements.txt).

    python bench/video.py speed --mmpose-python /tmp/venv-mmpose/bin/python      # ~10 min on 2 cores
    python bench/video.py speed --frames 30 --rounds 1 --variants per-frame,engine  # a quick look, no MMPose
    python bench/video.py memory
    python bench/video.py plot
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = ROOT.parent / "shared"
DATA = SHARED / "data"
PEERS = SHARED / "peers"
DETECTOR = SHARED / "weights" / "yolov8n-int8.onnx"
ULTRALIGHT = SHARED / "weights" / "ultralight-nano-simplepose-coco-256x192.onnx"
ARCH = "hrnet-w32_coco-256x192"
FAMILY = "hrnet"  # side_by_side.py's name for it (the MMPose config)
SIZE = (1280, 720)
CLIPS = ("walking", "group")
VARIANTS = ("mmpose", "per-frame", "engine", "engine-every5", "bf16", "bf16-every5")
_ENGINE = {"engine": ("fp32", 1), "engine-every5": ("fp32", 5), "bf16": ("bf16", 1), "bf16-every5": ("bf16", 5)}


def _paths() -> None:
    for p in (str(ROOT), str(ROOT / "tests")):  # poseapp, and tests/fixtures (the clips); after bench/ itself,
        if p not in sys.path:                  # so that "import bench" is bench/bench.py
            sys.path.append(p)


def _peak_rss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _side_by_side():
    """../shared/peers/side_by_side.py as a module (its MMPose config table)."""
    spec = importlib.util.spec_from_file_location("side_by_side", PEERS / "side_by_side.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -------------------------------------------------------------------------------------------------- workers


class _Channel:
    """The worker's line to the driver on the real stdout; whatever the libraries print goes to stderr."""

    def __init__(self) -> None:
        self._out = os.fdopen(os.dup(1), "w")
        os.dup2(2, 1)

    def send(self, **message: Any) -> None:
        print(json.dumps(message), file=self._out, flush=True)


def _serve(channel: _Channel, run_clip, dump: str) -> None:
    """Answer ``round CLIP`` lines with that round's seconds; on ``end``, save the last keypoints and go."""
    import numpy as np

    last: dict[str, list] = {}
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] != "round":
            break
        clip = words[1]
        t0 = time.perf_counter()
        keypoints, detector_frames = run_clip(clip)
        seconds = time.perf_counter() - t0
        last[clip] = keypoints
        channel.send(seconds=seconds, crops=sum(len(k) for k in keypoints), detector_frames=detector_frames)
    arrays = {f"{Path(clip).stem}_{i}": np.asarray(k, np.float64) for clip, ks in last.items() for i, k in
              enumerate(ks)}
    np.savez(dump, **arrays)
    channel.send(peak_rss=_peak_rss())


def worker_mmpose(a: argparse.Namespace) -> None:
    """In MMPose's venv: inference_topdown per frame, on the boxes file the detector worker wrote."""
    channel = _Channel()
    import cv2
    import mmpose
    import numpy as np
    import torch
    from mmengine.config import Config
    from mmpose.apis import inference_topdown, init_model

    torch.set_num_threads(a.threads)
    torch.set_grad_enabled(False)
    config = _side_by_side().FAMILIES[FAMILY][0]
    cfg = Config.fromfile(os.path.join(os.path.dirname(mmpose.__file__), ".mim", "configs", config))
    model = init_model(cfg, a.ckpt, device="cpu")
    boxes = np.load(a.boxes, allow_pickle=False)

    def run_clip(clip: str):
        stem = Path(clip).stem
        cap = cv2.VideoCapture(clip)
        out, n = [], 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            b = boxes[f"{stem}_{n}"]
            # no box: no call (inference_topdown would take the whole image as one)
            out.append(np.stack([s.pred_instances.keypoints[0] for s in inference_topdown(model, frame, b)])
                       if len(b) else np.zeros((0, 17, 2)))
            n += 1
        cap.release()
        return out, 0

    run_clip(a.clips[0])  # warm-up
    channel.send(ready=True, threads=torch.get_num_threads())
    _serve(channel, run_clip, a.dump)


def _poseapp_models(a: argparse.Namespace, precision: str = "fp32"):
    _paths()
    from poseapp.boxes import create_detector
    from poseapp.create import create_model

    estimator = create_model(a.ckpt, arch=ARCH, device="cpu", precision=precision, threads=a.threads)
    detector = create_detector(estimator.recipe, det_model=str(DETECTOR), device="cpu")
    return estimator, detector


def worker_detector(a: argparse.Namespace) -> None:
    """The detector alone on every frame (its time is MMPose's detector time); writes the boxes file."""
    channel = _Channel()
    import numpy as np

    _, detector = _poseapp_models(a)
    from poseapp.sources import open_source

    def detect(clip: str):
        boxes, seconds = [], 0.0
        with open_source(clip) as frames:
            for frame in frames:
                t0 = time.perf_counter()
                boxes.append(detector([frame])[0].boxes)
                seconds += time.perf_counter() - t0
        return boxes, seconds

    np.savez(a.boxes, **{f"{Path(c).stem}_{i}": b for c in a.clips for i, b in enumerate(detect(c)[0])})
    channel.send(ready=True)
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] != "round":
            break
        boxes, seconds = detect(words[1])
        channel.send(seconds=seconds, crops=sum(len(b) for b in boxes), detector_frames=len(boxes))
    channel.send(peak_rss=_peak_rss())


def worker_poseapp(a: argparse.Namespace) -> None:
    """per-frame (Pipeline.process per frame) or the engine (Pipeline(...)(source)) at a precision."""
    channel = _Channel()
    precision, every = _ENGINE.get(a.worker, ("fp32", 1))
    estimator, detector = _poseapp_models(a, precision)
    from poseapp.pipeline import Pipeline, VideoOptions
    from poseapp.sources import open_source

    def per_frame(clip: str):
        pipe = Pipeline(estimator, detector)
        with open_source(clip) as frames:
            out = [pipe.process([frame])[0].keypoints for frame in frames]
        return out, len(out)

    def engine(clip: str):
        pipe = Pipeline(estimator, detector, VideoOptions(det_every=every, track=True))
        with open_source(clip) as frames:
            out = [r.keypoints for r in pipe(frames)]
        return out, pipe.stats.detector_frames

    run_clip = per_frame if a.worker == "per-frame" else engine
    run_clip(a.clips[0])  # warm-up (and auto's one-time measurement, if it has none cached)
    channel.send(ready=True, backend=estimator.backend, precision=estimator.precision,
                 batch_size=estimator.batch_size)
    _serve(channel, run_clip, a.dump)


# --------------------------------------------------------------------------------------------------- driver


def _make_clips(folder: Path, frames: int) -> list[Path]:
    _paths()
    from fixtures.clips import make_clip

    return [make_clip(folder / f"{kind}.avi", kind, frames, size=SIZE)[0] for kind in CLIPS]


def _bf16_reason() -> str | None:
    _paths()
    from poseapp.runtimes.base import cpu_name, native_bf16

    return None if native_bf16() else f"this CPU ({cpu_name()}) has neither AMX-BF16 nor AVX512-BF16"


def speed(a: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    variants = [v.strip() for v in a.variants.split(",") if v.strip()]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        sys.exit(f"--variants: no {', '.join(sorted(unknown))} (choose from {', '.join(VARIANTS)})")
    if "mmpose" in variants and not a.mmpose_python:
        sys.exit("mmpose needs --mmpose-python VENV/bin/python (bash ../shared/peers/setup_mmpose.sh VENV builds "
                 "one), or leave it out of --variants")
    skipped = {}
    if any(v.startswith("bf16") for v in variants) and _bf16_reason():
        skipped = {v: _bf16_reason() for v in variants if v.startswith("bf16")}
        variants = [v for v in variants if v not in skipped]
    tmp = Path(tempfile.mkdtemp(prefix="bench_video_"))
    _paths()
    from bench import make_default_checkpoint

    ckpt = make_default_checkpoint(tmp)
    clips = _make_clips(tmp, a.frames)
    boxes = tmp / "boxes.npz"
    common = ["--ckpt", str(ckpt), "--boxes", str(boxes), "--threads", str(a.threads),
              *[arg for c in clips for arg in ("--clip", str(c))]]
    workers: dict[str, subprocess.Popen] = {}
    ready: dict[str, dict] = {}

    def start(kind: str) -> None:
        python = a.mmpose_python if kind == "mmpose" else sys.executable
        workers[kind] = subprocess.Popen([python, str(Path(__file__).resolve()), "worker", "--worker", kind,
                                          "--dump", str(tmp / f"{kind}.npz"), *common], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=None if a.verbose else subprocess.DEVNULL,
                                         text=True)
        line = workers[kind].stdout.readline()
        if not line:
            sys.exit(f"the {kind} worker failed to start (run again with --verbose to see why)")
        ready[kind] = json.loads(line)

    start("detector")  # first: it writes the boxes MMPose is given
    for kind in variants:
        start(kind)
    order = ["detector", *variants]
    times: dict[tuple[str, str], list[float]] = {}
    counts: dict[tuple[str, str], dict] = {}
    for _ in range(a.rounds):
        for clip in clips:
            for kind in order:
                p = workers[kind]
                p.stdin.write(f"round {clip}\n")
                p.stdin.flush()
                reply = json.loads(p.stdout.readline())
                times.setdefault((kind, clip.stem), []).append(reply["seconds"])
                counts[kind, clip.stem] = reply
    rss = {}
    for kind, p in workers.items():
        p.stdin.write("end\n")
        p.stdin.flush()
        rss[kind] = json.loads(p.stdout.readline())["peak_rss"]
        p.stdin.close()
        p.wait()
    dumps = {k: np.load(tmp / f"{k}.npz", allow_pickle=False) for k in variants}
    rows = []
    for clip in clips:
        det = statistics.median(times["detector", clip.stem])
        crops = counts["detector", clip.stem]["crops"]
        seconds = {k: statistics.median(times[k, clip.stem]) + (det if k == "mmpose" else 0.0) for k in variants}
        for k in variants:
            row = {"clip": clip.stem, "variant": k, "frames": a.frames, "crops": crops,
                   "seconds": round(seconds[k], 3), "crops_per_s": round(crops / seconds[k], 3),
                   "detector_frames": a.frames if k in ("mmpose", "per-frame") else counts[k, clip.stem][
                       "detector_frames"], "peak_rss_mib": round(rss[k] / 2 ** 20)}
            if k != "mmpose":
                row.update(backend=ready[k]["backend"], precision=ready[k]["precision"])
            if "mmpose" in variants:
                row["x_mmpose"] = round(seconds["mmpose"] / seconds[k], 3)
                if k in ("per-frame", "engine"):  # the same boxes at fp32 (bf16, and boxes carried, differ)
                    row["max_diff_to_mmpose_px"] = _max_diff(dumps[k], dumps["mmpose"], clip.stem)
            if "per-frame" in variants:
                row["x_per_frame"] = round(seconds["per-frame"] / seconds[k], 3)
            rows.append(row)
    return {"rows": rows, "skipped": skipped, "detector_seconds": {
        c.stem: round(statistics.median(times["detector", c.stem]), 3) for c in clips},
        "rounds": a.rounds, "threads": a.threads, "machine": _machine(), "mmpose_threads": ready.get(
            "mmpose", {}).get("threads")}


def _max_diff(ours, theirs, stem: str) -> float | None:
    """The largest keypoint difference on the frames both saw with the same number of instances (None: none)."""
    import numpy as np

    diffs = [float(np.abs(ours[k] - theirs[k]).max()) for k in theirs.files if k.startswith(stem + "_")
             and k in ours.files and ours[k].shape == theirs[k].shape and ours[k].size]
    return round(max(diffs), 6) if diffs else None


def _machine() -> dict[str, Any]:
    _paths()
    import bench

    return {k: v for k, v in bench.machine_info("cpu").items() if k in ("cpu_model", "cpus_usable", "torch",
                                                                       "opencv", "load_avg_start")}


def memory(a: argparse.Namespace) -> dict[str, Any]:
    """Peak RSS of ``python infer.py`` over short and long full-size clips (a child process each)."""
    tmp = Path(tempfile.mkdtemp(prefix="bench_video_mem_"))
    _paths()
    from bench import make_checkpoint
    from fixtures.clips import make_clip

    ckpt = make_checkpoint("coco_mobilenetv2_rle", "1x", tmp)
    env = {**os.environ, "POSEAPP_HOME": str(tmp / "home")}  # a weights cache of its own, made by the warm-up
    rows = []
    for n in [30, *a.lengths]:  # the first (not reported): backend auto's one-time probe and export
        clip = make_clip(tmp / f"walking_{n}.avi", "walking", n, size=SIZE)[0]
        cmd = [sys.executable, str(ROOT / "infer.py"), "--source", str(clip), "--det-model", "none", "--pose-model",
               str(ckpt), "--pose-arch", "mobilenetv2-rle_coco-256x192", "--no-flip", "--json", "--no-save",
               "--out", str(tmp / f"out_{n}")]
        log = tmp / f"stderr_{n}.txt"
        t0 = time.perf_counter()
        with open(log, "w") as err:  # a file, not a pipe: the child's progress bar must never block on it
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT, env=env)
            _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        if os.waitstatus_to_exitcode(status):
            sys.exit(f"{' '.join(cmd)} failed: {log.read_text()[-800:]}")
        lines = sum(1 for _ in open(tmp / f"out_{n}" / f"walking_{n}.jsonl"))
        clip.unlink()
        if n == 30:
            continue
        rows.append({"frames": n, "size": f"{SIZE[0]}x{SIZE[1]}", "peak_rss_mib": round(usage.ru_maxrss / 1024),
                     "seconds": round(seconds, 1), "jsonl_lines": lines})
    first, last = rows[0]["peak_rss_mib"], rows[-1]["peak_rss_mib"]
    return {"rows": rows, "growth": round(last / first - 1, 4), "machine": _machine()}


def plot(a: argparse.Namespace) -> dict[str, Any]:
    """The racer's x over time on the shaking clip: raw, One-Euro, Savitzky-Golay, and where it was pasted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    _paths()
    from fixtures.clips import make_clip

    from poseapp.boxes import create_detector
    from poseapp.create import create_model
    from poseapp.engine.keyframes import box_iou
    from poseapp.pipeline import Pipeline, VideoOptions
    from poseapp.sources import open_source

    tmp = Path(tempfile.mkdtemp(prefix="bench_video_plot_"))
    clip, truth = make_clip(tmp / "shaking.avi", "shaking", a.frames, seed=a.seed)
    estimator = create_model(ULTRALIGHT, arch="res50_coco-256x192", device="cpu")
    detector = create_detector(estimator.recipe, det_model=str(DETECTOR), device="cpu")
    racer = np.stack(truth["racer"])
    series: dict[str, np.ndarray] = {}
    for smooth in ("one-euro", "savgol"):
        pipe = Pipeline(estimator, detector, VideoOptions(track=True, smooth=smooth))
        with open_source(clip) as frames:
            results = list(pipe(frames))
        raw, smoothed, scores = [], [], []
        for r, box in zip(results, racer):
            i = int(np.argmax(box_iou(box[None].astype(np.float32), r.boxes)[0]))
            raw.append(r.poses.keypoints_raw[i])
            smoothed.append(r.keypoints[i])
            scores.append(r.scores[i])
        series["raw"], series[smooth] = np.stack(raw), np.stack(smoothed)
        mean_scores = np.stack(scores).mean(axis=0)
    k = int(np.argmax(mean_scores))  # the racer's most confident keypoint
    name = estimator.keypoint_set.names[k]
    shift = racer[:, 0] - racer[0, 0]  # where the patch was pasted, relative to frame 0
    pasted = series["raw"][:, k, 0].mean() - shift.mean() + shift
    t = np.arange(len(shift))
    fig, ax = plt.subplots(figsize=(8, 3.6), dpi=110)
    ax.plot(t, pasted, color="0.6", lw=4, alpha=0.5, label="pasted position (truth, up to a constant)")
    ax.plot(t, series["raw"][:, k, 0], "o-", ms=3, lw=1, label="raw (the model's keypoints)")
    ax.plot(t, series["one-euro"][:, k, 0], lw=2, label="--smooth one-euro")
    ax.plot(t, series["savgol"][:, k, 0], lw=2, ls="--", label="--smooth savgol")
    ax.set_xlabel("frame")
    ax.set_ylabel(f"{name} x (px)")
    ax.set_title("shaking clip: a standing person pasted up to 3 px off each frame")
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    out = Path(a.out)
    fig.savefig(out)

    def jitter(x: np.ndarray) -> float:
        return round(float(np.abs(np.diff(x, 2)).mean()), 3)

    return {"keypoint": name, "plot": str(out), "jitter_px": {s: jitter(series[s][:, k, 0]) for s in series},
            "jitter_pasted_px": jitter(pasted)}


def _print(kind: str, result: dict[str, Any]) -> None:
    if kind == "speed":
        cols = ["clip", "variant", "backend", "precision", "crops", "seconds", "crops_per_s", "x_mmpose",
                "x_per_frame", "detector_frames", "max_diff_to_mmpose_px", "peak_rss_mib"]
        print(" | ".join(cols))
        for row in result["rows"]:
            print(" | ".join(str(row.get(c, "")) for c in cols))
        for v, why in result["skipped"].items():
            print(f"{v}: left out: {why}")
        print(f"detector seconds per clip (added to MMPose's): {result['detector_seconds']}")
    elif kind == "memory":
        for row in result["rows"]:
            print(row)
        print(f"peak RSS growth from {result['rows'][0]['frames']} to {result['rows'][-1]['frames']} frames: "
              f"{100 * result['growth']:+.1f}%")
    else:
        print(result)
    print(json.dumps(result))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="kind")
    s = sub.add_parser("speed", help="crops/s against per-frame and MMPose")
    s.add_argument("--mmpose-python", help="python of the venv ../shared/peers/setup_mmpose.sh built")
    s.add_argument("--frames", type=int, default=60, help="frames per clip")
    s.add_argument("--rounds", type=int, default=2)
    s.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    s.add_argument("--variants", default=",".join(VARIANTS))
    s.add_argument("--verbose", action="store_true", help="show the workers' stderr")
    m = sub.add_parser("memory", help="peak RSS over short and long videos")
    m.add_argument("--lengths", type=lambda v: [int(x) for x in v.split(",")], default=[300, 3000])
    p = sub.add_parser("plot", help="raw against smoothed keypoints on the shaking clip")
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(HERE / "smoothing.png"))
    w = sub.add_parser("worker")
    w.add_argument("--worker", required=True)
    for flag in ("--ckpt", "--boxes", "--dump"):
        w.add_argument(flag)
    w.add_argument("--threads", type=int, default=2)
    w.add_argument("--clip", dest="clips", action="append", default=[])
    for parser in (s, m, p):
        parser.add_argument("--json", help="also write the result to this file")
    a = ap.parse_args(argv)
    if a.kind == "worker":
        {"mmpose": worker_mmpose, "detector": worker_detector}.get(a.worker, worker_poseapp)(a)
        return 0
    kind = a.kind or "speed"
    if a.kind is None:
        a = ap.parse_args(["speed", *(argv or sys.argv[1:])])
    result = {"speed": speed, "memory": memory, "plot": plot}[kind](a)
    _print(kind, result)
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
