#!/usr/bin/env python3
"""poseapp benchmark: model-only and end-to-end speed, as ratios against baselines taken in the same run.

One run, one model, real frames:

1. model-only: ``estimator.forward(crops)`` on real crops (cut with the detector's boxes from the real images
   below) at several batch sizes; crops/s per batch size (median call time), the best batch and its speed-up
   over batch 1.
2. end-to-end: the real images letterboxed to 1280x720, each held ``--hold`` frames, written to a temporary
   mp4, then ``open_source(video)`` -> ``Pipeline(estimator, YoloDetector(...))`` -> ``draw`` (no file
   output); frames/s, crops/s, the share of detector / pose / draw / other time, and e2e crops/s relative
   to the model-only best batch.
3. peak memory: RSS (``ru_maxrss``) after each phase, and ``torch.cuda.max_memory_allocated`` per phase on CUDA.

By default the pose model is the parity checkpoint of ``coco_hrnet-w32_hm`` (deterministic random weights,
regenerated into a temp folder by ``../shared/parity/make_checkpoint.py``) with the recipe
``hrnet-w32_coco-256x192``: trained weights cannot be downloaded here, and speed does not depend on the
weights' values. The benchmark prints; it is a script, not a test.

    python bench/bench.py                       # defaults (about 2-3 minutes on 2 CPU cores)
    python bench/bench.py --batch-sizes 1,8 --seconds 1 --frames 12 --json runs/bench.json
"""
from __future__ import annotations

import argparse
import datetime as _dt
import importlib.metadata
import json
import logging
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from anywhere without installing the package
    sys.path.insert(0, str(ROOT))

SHARED = ROOT.parent / "shared"
DATA = SHARED / "data"
PARITY = SHARED / "parity"
DEFAULT_MANIFEST = PARITY / "manifests" / "coco_hrnet-w32_hm.1x.json"
DEFAULT_ARCH = "hrnet-w32_coco-256x192"
DEFAULT_DETECTOR = SHARED / "weights" / "yolov8n-int8.onnx"
VIDEO_SIZE = (1280, 720)  # (width, height)
VIDEO_FPS = 30.0
DATA_SETS = ("coco", "crowdpose", "posetrack18")


class BenchError(RuntimeError):
    """A benchmark input is missing or unusable; the message says which and what to pass instead."""


# ----------------------------------------------------------------------------------------------------------
# Inputs: real images, the letterboxed video, the default checkpoint
# ----------------------------------------------------------------------------------------------------------


def real_image_paths(data: Path = DATA) -> list[tuple[str, Path]]:
    """(data set, path) of every .jpg of coco/, crowdpose/ and posetrack18/ (recursively), sorted per set."""
    out = []
    for name in DATA_SETS:
        folder = data / name
        if not folder.is_dir():
            raise BenchError(f"{folder} is missing: the benchmark needs ../shared/data beside the project")
        out += [(name, p) for p in sorted(folder.rglob("*.jpg"))]
    if not out:
        raise BenchError(f"no .jpg images under {data}/{{{','.join(DATA_SETS)}}}")
    return out


def letterbox(image, size: tuple[int, int] = VIDEO_SIZE, pad: int = 114):
    """(H, W, 3) uint8 -> (size[1], size[0], 3): scaled to fit, aspect kept, centred on grey."""
    import cv2
    import numpy as np

    w, h = size
    ih, iw = image.shape[:2]
    scale = min(w / iw, h / ih)
    nw, nh = round(iw * scale), round(ih * scale)
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (nw, nh), interpolation=interp)
    out = np.full((h, w, 3), pad, np.uint8)
    x0, y0 = (w - nw) // 2, (h - nh) // 2
    out[y0:y0 + nh, x0:x0 + nw] = resized
    return out


def load_frames(paths: list[tuple[str, Path]]) -> list[Any]:
    """The letterboxed 1280x720 BGR images, in order."""
    import cv2

    frames = []
    for _, p in paths:
        image = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if image is None:
            raise BenchError(f"cannot read image {p}")
        frames.append(letterbox(image))
    return frames


def write_video(frames: list[Any], path: Path, hold: int, fps: float = VIDEO_FPS) -> int:
    """Write every frame ``hold`` times to an mp4 (fourcc mp4v); returns the number of frames written."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, VIDEO_SIZE)
    if not writer.isOpened():
        raise BenchError(f"cv2.VideoWriter cannot write {path} with fourcc mp4v (OpenCV built without a "
                         f"video encoder?)")
    n = 0
    try:
        for frame in frames:
            for _ in range(hold):
                writer.write(frame)
                n += 1
    finally:
        writer.release()
    return n


def make_checkpoint(fixture: str, layout: str, folder: Path) -> Path:
    """Regenerate a parity fixture's checkpoint (``layout``: 1x, 0x or sithu; hash-checked by the script)
    into ``folder``."""
    script = PARITY / "make_checkpoint.py"
    if not script.is_file():
        raise BenchError(f"{script} is missing: pass --pose-model PATH (and --pose-arch NAME)")
    manifest = PARITY / "manifests" / (f"{fixture}.json" if layout == "sithu" else f"{fixture}.{layout}.json")
    out = folder / f"{fixture}.{layout}.pth"
    proc = subprocess.run([sys.executable, str(script), str(manifest), str(out)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise BenchError(f"make_checkpoint.py {manifest.name} failed ({proc.returncode}): "
                         f"{proc.stderr.strip()[-500:]}")
    return out


def make_default_checkpoint(folder: Path) -> Path:
    """The coco_hrnet-w32_hm parity checkpoint (MMPose 1.x layout) in ``folder``."""
    return make_checkpoint("coco_hrnet-w32_hm", "1x", folder)


# ----------------------------------------------------------------------------------------------------------
# Measuring
# ----------------------------------------------------------------------------------------------------------


class Clock:
    """perf_counter that first waits for queued CUDA work, so a timing covers the work it claims to."""

    def __init__(self, device: str) -> None:
        import torch

        self._sync = torch.cuda.synchronize if device.startswith("cuda") else None

    def __call__(self) -> float:
        if self._sync is not None:
            self._sync()
        return time.perf_counter()


def params_m(recipe) -> float:
    """Millions of parameters of the recipe's network (built afresh: a runtime need not hold a torch module)."""
    from poseapp.models import build_model

    return sum(p.numel() for p in build_model(recipe.arch, recipe.num_keypoints, recipe.input_size).parameters()) / 1e6


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (ru_maxrss: KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def cuda_peak(device: str, reset: bool = False) -> int | None:
    """torch.cuda.max_memory_allocated since the last reset (None off CUDA); ``reset`` starts a new phase."""
    if not device.startswith("cuda"):
        return None
    import torch

    peak = int(torch.cuda.max_memory_allocated())
    if reset:
        torch.cuda.reset_peak_memory_stats()
    return peak


def real_crops(estimator, detector, frames: list[Any]):
    """(M, h, w, 3) uint8 crops cut from ``frames`` with the detector's boxes (the crops e2e will see)."""
    import numpy as np

    from poseapp.estimator import make_crops
    from poseapp.results import Frame

    boxes = [d.boxes for d in detector([Frame(image=f, source=f"frame{i}") for i, f in enumerate(frames)])]
    crops = make_crops(frames, boxes, estimator.recipe).pixels
    if len(crops) == 0:
        raise BenchError("the detector found nobody in the real images: check --det-model")
    return np.ascontiguousarray(crops), [len(b) for b in boxes]


def time_model_only(estimator, crops, batch_sizes: list[int], seconds: float, warmup: int, min_calls: int,
                    clock: Clock) -> dict[int, dict[str, float]]:
    """Per batch size: warm-up calls, then timed calls until ``seconds`` and ``min_calls`` are both reached."""
    import numpy as np

    pool = len(crops)
    out: dict[int, dict[str, float]] = {}
    saved = estimator.batch_size
    per_crop: float | None = None  # seconds per crop at the previous batch size
    try:
        for b in batch_sizes:
            estimator.batch_size = b  # forward() runs its input in chunks of batch_size: one chunk per call
            start = 0

            def next_batch():
                nonlocal start
                idx = np.arange(start, start + b) % pool  # cycle through all real crops
                start = (start + b) % pool
                return crops[idx]

            # Per-shape set-up (oneDNN primitives, cuDNN algorithms, allocator) costs milliseconds: warm up
            # unless the previous batch size predicts one call of this one already lasts longer than `seconds`.
            skip = per_crop is not None and per_crop * b > seconds
            for _ in range(0 if skip else warmup):
                estimator.forward(next_batch())
            times: list[float] = []
            began = clock()
            while len(times) < min_calls or (clock() - began) < seconds:
                x = next_batch()
                t0 = clock()
                estimator.forward(x)
                times.append(clock() - t0)
            med = statistics.median(times)
            per_crop = med / b
            out[b] = {"crops_per_s": b / med, "median_s_per_call": med, "min_s_per_call": min(times),
                      "max_s_per_call": max(times), "calls": len(times), "warmup_calls": 0 if skip else warmup}
            print(f"    batch {b:>3}: {b / med:8.2f} crops/s  ({len(times)} calls, "
                  f"{0 if skip else warmup} warm-up)", flush=True)
    finally:
        estimator.batch_size = saved
    return out


def time_end_to_end(estimator, detector, video: Path, max_frames: int | None, clock: Clock) -> dict[str, float]:
    """Run the real pipeline over ``video`` with drawing and no file output; totals and per-stage seconds."""
    from poseapp.drawing import draw
    from poseapp.pipeline import Pipeline
    from poseapp.sources import open_source

    pipe = Pipeline(estimator, detector)
    frames = crops = 0
    detect_s = pose_s = draw_s = 0.0
    t0 = clock()
    with open_source(video, max_frames=max_frames) as source:
        for result in pipe(source):
            td = time.perf_counter()
            draw(result.frame.image, result.poses)
            draw_s += time.perf_counter() - td
            detect_s += result.timings["detect"]  # per frame (Pipeline processes one frame per call)
            pose_s += result.timings["pose"]
            frames += 1
            crops += len(result)
    total = clock() - t0
    if frames == 0:
        raise BenchError(f"the pipeline read no frames from {video}")
    other = max(0.0, total - detect_s - pose_s - draw_s)
    return {"frames": frames, "crops": crops, "seconds": total, "frames_per_s": frames / total,
            "crops_per_s": crops / total, "crops_per_frame": crops / frames,
            "detect_s": detect_s, "pose_s": pose_s, "draw_s": draw_s, "other_s": other,
            "detect_share": detect_s / total, "pose_share": pose_s / total, "draw_share": draw_s / total,
            "other_share": other / total, "pose_stage_crops_per_s": crops / pose_s if pose_s > 0 else float("nan"),
            "detect_ms_per_frame": 1e3 * detect_s / frames}


# ----------------------------------------------------------------------------------------------------------
# Reporting
# ----------------------------------------------------------------------------------------------------------


def machine_info(device: str) -> dict[str, Any]:
    import cv2
    import torch

    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "opencv": cv2.__version__,
        "device": device,
        "gpu": torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else None,
        "load_avg_start": _loadavg(),
        "cpu_pressure_start": _cpu_pressure(),
    }
    try:  # the version without importing it: poseapp.boxes.yolo sets ultralytics' quiet/offline env first
        info["ultralytics"] = importlib.metadata.version("ultralytics")
    except importlib.metadata.PackageNotFoundError:
        info["ultralytics"] = None
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_pressure() -> float | None:
    """Linux PSI: % of the last 60 s in which some runnable task waited for a CPU (None where unsupported)."""
    try:
        first = Path("/proc/pressure/cpu").read_text().splitlines()[0]  # "some avg10=.. avg60=.. avg300=.. total=.."
        return float(dict(kv.split("=") for kv in first.split()[1:])["avg60"])
    except (OSError, IndexError, KeyError, ValueError):
        return None


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.0f}%"


def _busy(m: dict[str, Any]) -> bool:
    """Whether other work competed for the CPUs (load above the CPU count, or PSI above 10%) on a CPU run."""
    if m["device"] != "cpu":
        return False
    cpus = m["cpus_usable"] or 1
    loads = [v[0] for v in (m.get("load_avg_start"), m.get("load_avg_end")) if v]
    psi = [v for v in (m.get("cpu_pressure_start"), m.get("cpu_pressure_end")) if v is not None]
    return any(v > cpus + 0.5 for v in loads) or any(v > 10 for v in psi)


def _gib(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 2**30:.2f} GiB"


def print_report(r: dict[str, Any]) -> None:
    m, mod, mo, e, mem = r["machine"], r["model"], r["model_only"], r["end_to_end"], r["memory"]
    load = lambda v: "n/a" if v is None else "/".join(f"{x:.1f}" for x in v)  # noqa: E731
    print()
    print("=" * 100)
    print(f"poseapp benchmark  {r['date']}")
    print(f"machine    {m['cpu_count']} CPUs ({m['cpus_usable']} usable, torch threads {m['torch_threads']}), "
          f"{m['cpu_model']}")
    print(f"           load average (1/5/15 min) {load(m['load_avg_start'])} at start, "
          f"{load(m['load_avg_end'])} at end; CPU pressure (PSI some avg60) {_pct(m['cpu_pressure_start'])} "
          f"at start, {_pct(m['cpu_pressure_end'])} at end")
    if _busy(m):
        print("           WARNING: other processes were competing for the CPUs during this run; the numbers are "
              "lower and noisier than on an idle machine")
    print(f"software   Python {m['python']}, torch {m['torch']}, OpenCV {m['opencv']}, "
          f"ultralytics {m['ultralytics']}")
    print(f"device     {m['device']}{' (' + m['gpu'] + ')' if m['gpu'] else ''}, "
          f"pose network on {mod['backend']} at {mod['precision']}")
    print(f"pose model {mod['recipe']} (arch {mod['arch']}, {mod['params_m']:.1f} M params), input "
          f"{mod['input_w']}x{mod['input_h']} (w x h), heatmap {mod['heatmap_w']}x{mod['heatmap_h']}, "
          f"flip test {'ON' if mod['flip_test'] else 'OFF'}")
    print(f"  weights  {mod['weights']}")
    print(f"detector   {r['detector']['model']} (imgsz {r['detector']['imgsz']}, classes {r['detector']['classes']})")
    print(f"crops      {mo['pool']} real crops cut with the detector's boxes from {r['images']['count']} real images "
          f"({', '.join(f'{k} {v}' for k, v in r['images']['per_set'].items())}), letterboxed to 1280x720")
    print()
    print(f"1. model-only: estimator.forward(crops); per batch size {mo['warmup']} warm-up call(s) (skipped when "
          f"one call is predicted to last > {mo['seconds']:g} s), then timed calls until >= {mo['seconds']:g} s "
          f"and >= {mo['min_calls']} calls; crops/s = batch / median call time")
    vs_base = f"vs batch {mo['baseline_batch']}"
    print(f"   {'batch':>5} {'crops/s':>9} {'ms/crop':>9} {'median s/call':>14} {'calls':>6} {vs_base:>11}")
    base = mo["per_batch"][str(mo["baseline_batch"])]["crops_per_s"]
    for b, v in mo["per_batch"].items():
        print(f"   {b:>5} {v['crops_per_s']:9.2f} {1e3 / v['crops_per_s']:9.1f} {v['median_s_per_call']:14.3f} "
              f"{v['calls']:6d} {v['crops_per_s'] / base:10.2f}x")
    print(f"   best: batch {mo['best_batch']}, {mo['best_crops_per_s']:.2f} crops/s = "
          f"{mo['best_vs_batch1']:.2f}x batch {mo['baseline_batch']}")
    print()
    print("2. end-to-end: open_source(video) -> Pipeline(estimator, YoloDetector) -> draw, no file output")
    v = r["video"]
    print(f"   video    TEMPORARY mp4 built from the real images above, letterboxed to {v['width']}x{v['height']}, "
          f"each held {v['hold']} frames: {v['frames_written']} frames @ {v['fps']:g} fps, fourcc mp4v "
          f"({v['path']}, deleted at exit)")
    print(f"   frames   {e['frames']} in {e['seconds']:.1f} s -> {e['frames_per_s']:.2f} frames/s")
    print(f"   crops    {e['crops']} ({e['crops_per_frame']:.1f} per frame) -> {e['crops_per_s']:.2f} crops/s; "
          f"estimator batch size {e['estimator_batch_size']} (the pipeline sends one frame's crops per call)")
    print(f"   time     detector {100 * e['detect_share']:.1f}% ({e['detect_ms_per_frame']:.0f} ms/frame) | pose "
          f"{100 * e['pose_share']:.1f}% | draw {100 * e['draw_share']:.1f}% | other (decode, glue) "
          f"{100 * e['other_share']:.1f}%")
    print(f"   pose stage alone (crop + forward + decode, per frame): {e['pose_stage_crops_per_s']:.2f} crops/s")
    print()
    print("3. peak memory")
    print(f"   RSS (ru_maxrss, process peak so far): after model load {_gib(mem['rss_after_load'])}, after "
          f"model-only {_gib(mem['rss_after_model_only'])}, after end-to-end {_gib(mem['rss_after_e2e'])}")
    print(f"   CUDA max_memory_allocated: model-only {_gib(mem['cuda_model_only'])}, "
          f"end-to-end {_gib(mem['cuda_e2e'])}")
    print()
    print("ratios (same model, same run)")
    for b, v in mo["per_batch"].items():
        if int(b) != mo["baseline_batch"]:
            print(f"   batch {b:>2} vs batch {mo['baseline_batch']}                    "
                  f"{v['crops_per_s'] / base:6.2f}x")
    print(f"   end-to-end vs model-only best batch   {r['ratios']['e2e_vs_model_only_best']:6.2f}x  (crops/s)")
    print(f"   pose stage vs model-only best batch   {r['ratios']['pose_stage_vs_model_only_best']:6.2f}x")
    print("=" * 100)


# ----------------------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pose-model", default=None,
                   help="zoo name or checkpoint path (default: the coco_hrnet-w32_hm parity checkpoint, "
                        "regenerated into a temp folder)")
    p.add_argument("--pose-arch", default=None,
                   help=f"zoo name whose recipe a checkpoint follows (default {DEFAULT_ARCH} for the default "
                        f"model)")
    p.add_argument("--det-model", default=str(DEFAULT_DETECTOR),
                   help="YOLO detector for ultralytics (default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    p.add_argument("--half", action="store_true", help="float16 (CUDA only)")
    p.add_argument("--backend", default="auto", help="pose runtime: auto, torch, onnxruntime, openvino (default: %(default)s)")
    p.add_argument("--precision", default=None, help="fp32, bf16, fp16 (default: fp32)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for the pose network (default: all allowed)")
    p.add_argument("--no-flip", action="store_true", help="turn the flip test off (on by default, as published)")
    p.add_argument("--batch-sizes", default="1,2,4,8,16,32",
                   help="comma-separated model-only batch sizes (default: %(default)s)")
    p.add_argument("--seconds", type=float, default=3.0,
                   help="minimum timed seconds per batch size (default: %(default)s)")
    p.add_argument("--min-calls", type=int, default=2,
                   help="minimum timed calls per batch size (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=1,
                   help="untimed calls before timing each batch size, skipped when one call is predicted to last "
                        "longer than --seconds (default: %(default)s)")
    p.add_argument("--hold", type=int, default=3, help="video frames per real image (default: %(default)s)")
    p.add_argument("--frames", type=int, default=None, help="end-to-end: stop after N video frames (default: all)")
    p.add_argument("--json", type=Path, default=None, help="also save every number to this JSON file")
    args = p.parse_args(argv)
    try:
        args.batch_sizes = sorted({int(b) for b in args.batch_sizes.split(",") if b.strip()})
    except ValueError:
        p.error(f"--batch-sizes must be comma-separated integers, got {args.batch_sizes!r}")
    if not args.batch_sizes or min(args.batch_sizes) < 1:
        p.error("--batch-sizes needs at least one batch size, all >= 1")
    if args.hold < 1 or (args.frames is not None and args.frames < 1) or args.min_calls < 1 or args.warmup < 0:
        p.error("--hold, --frames and --min-calls must be >= 1, --warmup >= 0")
    return args


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    import torch

    from poseapp.create import create_model, resolve_device
    from poseapp.boxes import YoloDetector

    device = resolve_device(args.device)
    clock = Clock(device)
    info = machine_info(device)
    print(f"device {device}, torch {torch.__version__}, {info['cpu_count']} CPUs, torch threads "
          f"{info['torch_threads']}", flush=True)

    if args.pose_model is None:
        print("regenerating the coco_hrnet-w32_hm parity checkpoint (random weights; speed does not depend on "
              "the values) ...", flush=True)
        pose_model: str | Path = make_default_checkpoint(tmp)
        arch = args.pose_arch or DEFAULT_ARCH
        weights = f"parity checkpoint of coco_hrnet-w32_hm (deterministic random weights), {pose_model}"
    else:
        pose_model, arch = args.pose_model, args.pose_arch
        weights = str(pose_model)
    estimator = create_model(pose_model, arch=arch, device=device, half=args.half, backend=args.backend,
                             precision=args.precision, threads=args.threads, flip_test=False if args.no_flip else None)
    print(f"pose network on {estimator.backend}, {estimator.precision}", flush=True)
    recipe = estimator.recipe
    detector = YoloDetector(args.det_model, classes=(0,), device=device, half=args.half)
    rss_load = peak_rss_bytes()
    cuda_peak(device, reset=True)

    paths = real_image_paths()
    frames = load_frames(paths)
    per_set = {name: sum(1 for n, _ in paths if n == name) for name in DATA_SETS}

    # 1. model-only
    crops, counts = real_crops(estimator, detector, frames)
    print(f"model-only: {len(crops)} real crops from {len(frames)} images; batch sizes {args.batch_sizes}",
          flush=True)
    per_batch = time_model_only(estimator, crops, args.batch_sizes, args.seconds, args.warmup, args.min_calls,
                                clock)
    rss_mo = peak_rss_bytes()
    cuda_mo = cuda_peak(device, reset=True)
    baseline = args.batch_sizes[0]  # batch 1 with the default sizes
    best = max(per_batch, key=lambda b: per_batch[b]["crops_per_s"])
    best_cps = per_batch[best]["crops_per_s"]

    # 2. end-to-end
    video = tmp / "bench_1280x720.mp4"
    written = write_video(frames, video, args.hold)
    print(f"end-to-end: wrote a temporary {written}-frame 1280x720 mp4 from {len(frames)} real images "
          f"(each held {args.hold} frames): {video}", flush=True)
    e2e = time_end_to_end(estimator, detector, video, args.frames, clock)
    e2e["estimator_batch_size"] = estimator.batch_size
    rss_e2e = peak_rss_bytes()
    cuda_e2e = cuda_peak(device)
    info["load_avg_end"] = _loadavg()
    info["cpu_pressure_end"] = _cpu_pressure()

    h, w = recipe.input_size[1], recipe.input_size[0]
    return {
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "machine": info,
        "model": {"recipe": recipe.name, "arch": recipe.arch, "weights": weights, "input_w": w, "input_h": h,
                  "heatmap_w": (recipe.heatmap_size or (None, None))[0],
                  "heatmap_h": (recipe.heatmap_size or (None, None))[1],
                  "flip_test": estimator.flip_test, "backend": estimator.backend, "precision": estimator.precision,
                  "params_m": params_m(recipe)},
        "detector": {"model": str(args.det_model), "imgsz": 640, "classes": [0]},
        "images": {"count": len(paths), "per_set": per_set, "crops_per_image": counts,
                   "paths": [str(p) for _, p in paths]},
        "video": {"path": str(video), "width": VIDEO_SIZE[0], "height": VIDEO_SIZE[1], "hold": args.hold,
                  "fps": VIDEO_FPS, "frames_written": written, "fourcc": "mp4v", "temporary": True},
        "model_only": {"pool": len(crops), "warmup": args.warmup, "seconds": args.seconds,
                       "min_calls": args.min_calls, "baseline_batch": baseline,
                       "per_batch": {str(b): v for b, v in per_batch.items()}, "best_batch": best,
                       "best_crops_per_s": best_cps,
                       "best_vs_batch1": best_cps / per_batch[baseline]["crops_per_s"]},
        "end_to_end": e2e,
        "memory": {"rss_after_load": rss_load, "rss_after_model_only": rss_mo, "rss_after_e2e": rss_e2e,
                   "cuda_model_only": cuda_mo, "cuda_e2e": cuda_e2e},
        "ratios": {"best_batch_vs_batch1": best_cps / per_batch[baseline]["crops_per_s"],
                   "e2e_vs_model_only_best": e2e["crops_per_s"] / best_cps,
                   "pose_stage_vs_model_only_best": e2e["pose_stage_crops_per_s"] / best_cps},
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from poseapp.errors import PoseAppError

    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="poseapp_bench_") as tmp:
            report = run(args, Path(tmp))
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except PoseAppError as e:  # its arguments shown as this script's flags
        flags = {"model": "--pose-model", "arch": "--pose-arch", "det_model": "--det-model", "device": "--device",
                 "half": "--half"}
        print(f"error: {e.render(flags)}", file=sys.stderr)
        return 2
    report["wall_s"] = time.perf_counter() - started
    print_report(report)
    print(f"total wall time {report['wall_s']:.0f} s")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"numbers saved to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
