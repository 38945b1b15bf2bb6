#!/usr/bin/env python3
"""``--ray`` on this machine: one process against Ray with 1 and 2 workers, in alternating rounds.

The inputs are every image of ../shared/data listed ``--repeat`` times in a ``.txt`` list (people, animals,
faces: the detector's person boxes), the real int8 YOLOv8n detector and a pose model (default: the trained
Ultralight-Nano-SimplePose ONNX of ../shared/weights; ``--pose-model hrnet`` rebuilds the coco_hrnet-w32_hm
parity checkpoint, the zoo's default architecture, random weights in the published layout), ONNX Runtime
(``--backend``), keypoints written as JSON, no annotated images. One local Ray instance (all CPUs) is started
once, and its start-up timed; then, round after round, each contender runs the whole list:

  single      ``run_predict``: one process, the pose network on every CPU (``threads`` = CPUs).
  ray-1       ``run_distributed`` with 1 worker (CPUs less half a CPU kept for reading; threads = its CPUs).
  ray-2       ``run_distributed`` with 2 workers (the CPUs shared out the same way).

Reported per contender (median over rounds): wall seconds from the call to the merged files, images/s over
that wall, the busy seconds of the workers (the sum of their tasks' own seconds, from the shards' records),
per-worker images/s while busy, and the overhead (wall less busy seconds per worker: actor start, model
load, scheduling, the merge), with the shard size and the bytes of one image shard. bench/README.md turns
these into an estimate for N nodes.

    python bench/distributed.py                    # ~6 min on 2 cores
    python bench/distributed.py --pose-model hrnet --repeat 2
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT))

ULTRALIGHT = SHARED / "weights" / "ultralight-nano-simplepose-coco-256x192.onnx"
DETECTOR = SHARED / "weights" / "yolov8n-int8.onnx"


def image_list(folder: Path, repeat: int) -> Path:
    images = sorted(p for p in (SHARED / "data").rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    path = folder / "images.txt"
    path.write_text("".join(f"{p}\n" for _ in range(repeat) for p in images))
    return path


def pose_model(name: str, folder: Path) -> tuple[str, str]:
    """(model file, arch) for ``--pose-model``."""
    if name == "ultralight":
        return str(ULTRALIGHT), "res50_coco-256x192"
    out = folder / "td-hm_hrnet-w32_8xb64-210e_coco-256x192.pth"
    manifest = SHARED / "parity" / "manifests" / "coco_hrnet-w32_hm.1x.json"
    subprocess.run([sys.executable, str(SHARED / "parity" / "make_checkpoint.py"), str(manifest), str(out)],
                   check=True, capture_output=True)
    return str(out), "hrnet-w32_coco-256x192"


def busy_seconds(out: Path) -> tuple[float, int]:
    """The workers' summed task seconds, and the size of the first image shard, from the run's shards."""
    records = [json.loads(p.read_text()) for p in (out / "shards").glob("*.done.json")]
    shards = sorted((out / "shards").glob("images-*.json"))
    shards = [p for p in shards if not p.name.endswith(".done.json")]
    return sum(r["seconds"] for r in records), shards[0].stat().st_size if shards else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pose-model", choices=("ultralight", "hrnet"), default="ultralight")
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--repeat", type=int, default=4, help="times the image list is repeated")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--shard-size", type=int, default=32)
    args = parser.parse_args()

    import ray

    from poseapp import PredictOptions, run_predict
    from poseapp.distributed import RayOptions, run_distributed

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    scratch = Path(tempfile.mkdtemp(prefix="bench_distributed_"))
    source = image_list(scratch, args.repeat)
    model, arch = pose_model(args.pose_model, scratch)
    os.environ.setdefault("POSEAPP_HOME", str(scratch / "weights"))
    t0 = time.perf_counter()
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"POSEAPP_HOME": os.environ["POSEAPP_HOME"]}})
    start_s = time.perf_counter() - t0
    base = dict(source=str(source), pose_model=model, pose_arch=arch, det_model=str(DETECTOR), backend=args.backend,
                save_media=False, save_json=True, exist_ok=True)
    contenders = {
        "single": lambda out: run_predict(PredictOptions(**base, out_dir=out, threads=cpus)),
        "ray-1": lambda out: run_distributed(PredictOptions(**base, out_dir=out),
                                             RayOptions(workers=1, shard_size=args.shard_size)),
        "ray-2": lambda out: run_distributed(PredictOptions(**base, out_dir=out),
                                             RayOptions(workers=2, shard_size=args.shard_size)),
    }
    results: dict[str, list[dict]] = {name: [] for name in contenders}
    for r in range(args.rounds):
        for name, run in contenders.items():
            out = scratch / f"{name}-{r}"
            t = time.perf_counter()
            report = run(out)
            wall = time.perf_counter() - t
            busy, shard_bytes = busy_seconds(out) if name != "single" else (wall, 0)
            workers = getattr(report, "workers", 1) or 1
            results[name].append(dict(wall=wall, frames=report.frames, instances=report.instances, busy=busy,
                                      workers=workers, shard_bytes=shard_bytes))
            print(f"round {r + 1} {name}: {wall:.1f} s, {report.frames} images, {report.instances} instances",
                  file=sys.stderr)
    ray.shutdown()
    images = results["single"][0]["frames"]
    print(f"\n{images} images ({args.repeat} x ../shared/data), {results['single'][0]['instances']} instances, "
          f"{args.pose_model} on {args.backend}, {cpus} CPUs, shard size {args.shard_size}; "
          f"local Ray start-up {start_s:.1f} s (once, not in the walls)\n")
    print("| contender | workers | wall s | images/s | vs single | busy s | per-worker images/s busy | "
          "overhead s | shard bytes |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    single_rate = None
    for name, runs in results.items():
        wall = statistics.median(x["wall"] for x in runs)
        busy = statistics.median(x["busy"] for x in runs)
        workers = runs[0]["workers"]
        rate = images / wall
        single_rate = single_rate or rate
        per_worker = images / busy if busy else 0.0  # busy: worker-seconds summed over the workers
        overhead = wall - busy / workers
        print(f"| {name} | {workers} | {wall:.1f} | {rate:.2f} | {rate / single_rate:.2f}x | {busy:.1f} | "
              f"{per_worker:.2f} | {overhead:.1f} | {runs[0]['shard_bytes']:,} |")


if __name__ == "__main__":
    main()
