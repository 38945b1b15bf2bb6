#!/usr/bin/env python3
"""Backends and precisions in one run: the network alone, and poseapp's whole top-down step, per runtime.

For one model (default: the HRNet-W32 COCO parity checkpoint, regenerated into a temporary folder) and each
runtime asked for (``torch``, ``onnxruntime``, ``openvino`` at fp32, ``openvino``/``torch`` at bf16 where
the CPU has it), on the same real images and ground-truth boxes as ``../shared/peers/side_by_side.py``
(30 people in 9 images of coco, crowdpose and posetrack18), in alternating rounds:

- forward-only crops/s: ``runtime(x)`` on already normalised crops, batch B (with the flip test, one pass
  over [B crops; B mirrored crops], as the estimator runs it);
- end-to-end crops/s: ``estimator(images, boxes)`` with ``batch_size=B`` over all 30 boxes of the 9 images
  at once (cropping, normalisation, forward, flip-back, decoding, mapping to the image);
- end-to-end / forward-only, and each runtime's crops/s relative to torch fp32's in the same run;
- the largest keypoint difference to torch fp32.

``--rtmlib`` also runs rtmlib's ``RTMPose`` (its registry package, ONNX Runtime, one crop at a time as it
does) on an RTMPose-m export made here, against poseapp on the same .onnx file (no flip test: rtmlib has
none), images converted to RGB for rtmlib (it normalises the channels in the order it gets them).

    python bench/backends.py                                   # HRNet-W32, flip on, batch 8 (~5 min)
    python bench/backends.py --no-flip --batch-size 16 --rounds 3 --json runs/backends.json
    python bench/backends.py --rtmlib     # + rtmlib vs poseapp on RTMPose-m (pip install -r bench/requirements.txt)
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (bench/bench.py: paths, checkpoint and machine helpers)

PEERS = bench.SHARED / "peers"
RUNTIMES = [("torch", "fp32"), ("onnxruntime", "fp32"), ("openvino", "fp32"), ("torch", "bf16"), ("openvino", "bf16")]


def images_and_boxes():
    """side_by_side.py's images and ground-truth boxes (its own function, so both measure the same work)."""
    import cv2

    import importlib.util

    spec = importlib.util.spec_from_file_location("side_by_side", PEERS / "side_by_side.py")
    side_by_side = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(side_by_side)
    items = side_by_side.images_and_boxes()
    return [cv2.imread(p) for p, _ in items], [b for _, b in items]


def alternate(workloads: dict, rounds: int) -> dict[str, float]:
    """Median seconds of each workload over ``rounds`` rounds, the workloads taking turns (one warm-up each)."""
    for work in workloads.values():
        work()
    times = {name: [] for name in workloads}
    for _ in range(rounds):
        for name, work in workloads.items():
            t0 = time.perf_counter()
            work()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pose-model", default=None, help="checkpoint (default: the coco_hrnet-w32_hm parity checkpoint)")
    p.add_argument("--pose-arch", default=None, help=f"its zoo recipe (default {bench.DEFAULT_ARCH})")
    p.add_argument("--batch-size", type=int, default=8, help="crops per forward pass (default: %(default)s)")
    p.add_argument("--no-flip", action="store_true", help="turn the flip test off (on by default, as published)")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds per workload (default: %(default)s)")
    p.add_argument("--runtimes", default=",".join(f"{b}:{q}" for b, q in RUNTIMES),
                   help="backend:precision list (default: %(default)s)")
    p.add_argument("--rtmlib", action="store_true", help="also rtmlib vs poseapp on an RTMPose-m export")
    p.add_argument("--json", type=Path, default=None, help="also save the numbers to this JSON file")
    args = p.parse_args(argv)
    import importlib.util

    if args.rtmlib and importlib.util.find_spec("rtmlib") is None:
        p.error("--rtmlib needs rtmlib: pip install -r bench/requirements.txt")

    import numpy as np
    import torch

    from poseapp import create_model
    from poseapp.estimator import make_crops
    from poseapp.runtimes.base import cpu_name, native_bf16

    images, boxes = images_and_boxes()
    crops_total = sum(len(b) for b in boxes)
    flip = not args.no_flip
    print(f"{cpu_name()}, torch {torch.__version__} ({torch.get_num_threads()} threads); {crops_total} people in "
          f"{len(images)} images; batch {args.batch_size}, flip test {'on' if flip else 'off'}", flush=True)
    result: dict = {"cpu": cpu_name(), "batch_size": args.batch_size, "flip": flip, "runtimes": {}}
    with tempfile.TemporaryDirectory(prefix="poseapp-backends-") as tmp:
        model = args.pose_model or bench.make_default_checkpoint(Path(tmp))
        arch = args.pose_arch or (bench.DEFAULT_ARCH if args.pose_model is None else None)
        estimators = {}
        for item in args.runtimes.split(","):
            backend, precision = item.split(":")
            if precision == "bf16" and not native_bf16():
                print(f"  {item}: left out (no AMX-BF16/AVX512-BF16 on this CPU)")
                continue
            estimators[item] = create_model(model, arch=arch, device="cpu", backend=backend, precision=precision,
                                            batch_size=args.batch_size, flip_test=flip)
        first = next(iter(estimators.values()))
        crops = make_crops(images, boxes, first.recipe).pixels
        x = first._normalise(crops[:args.batch_size])
        x = torch.cat([x, x.flip(-1)]) if flip else x

        def forward(est):
            return lambda: est.runtime(x)

        def whole(est):
            return lambda: est(images, boxes)

        work = {}
        for name, est in estimators.items():
            work[f"{name} forward"] = forward(est)
            work[f"{name} e2e"] = whole(est)
        seconds = alternate(work, args.rounds)
        base_kp = np.concatenate([k for k, _ in estimators[next(iter(estimators))](images, boxes)])
        base_name = next(iter(estimators))
        base_e2e = crops_total / seconds[f"{base_name} e2e"]
        print(f"\n{'runtime':<18} {'forward-only':>13} {'end-to-end':>12} {'e2e/forward':>12} {'vs ' + base_name:>16} "
              f"{'max kp diff':>12}")
        for name, est in estimators.items():
            fwd = len(x) / (2 if flip else 1) / seconds[f"{name} forward"]
            e2e = crops_total / seconds[f"{name} e2e"]
            kp = np.concatenate([k for k, _ in est(images, boxes)])
            diff = float(np.abs(kp - base_kp).max())
            result["runtimes"][name] = {"forward_crops_per_s": fwd, "e2e_crops_per_s": e2e, "e2e_over_forward": e2e / fwd,
                                        "vs_first": e2e / base_e2e, "max_keypoint_diff_px": diff,
                                        "precision_ran": est.precision}
            print(f"{name:<18} {fwd:13.2f} {e2e:12.2f} {e2e / fwd:11.2f}x {e2e / base_e2e:15.2f}x {diff:12.2e}")
        if args.rtmlib:
            result["rtmlib"] = rtmlib_vs_poseapp(Path(tmp), images, boxes, args.rounds)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    return 0


def rtmlib_vs_poseapp(tmp: Path, images, boxes, rounds: int) -> dict:
    """rtmlib's RTMPose and poseapp on the same RTMPose-m .onnx (exported here), images and boxes."""
    import numpy as np

    from rtmlib import RTMPose
    from poseapp import create_model
    from poseapp.exporting import export_model

    ckpt = bench.make_checkpoint("coco_rtmpose-m", "1x", tmp)
    onnx = export_model(ckpt, arch="rtmpose-m_coco-256x192", out=tmp / "rtmpose-m.onnx").path
    theirs = RTMPose(str(onnx), model_input_size=(192, 256), backend="onnxruntime", device="cpu")
    rgb = [im[..., ::-1].copy() for im in images]
    results = {}
    for backend in ("onnxruntime", "auto"):
        ours = create_model(onnx, device="cpu", backend=backend, flip_test=False)
        seconds = alternate({"rtmlib": lambda: [theirs(im, bboxes=b) for im, b in zip(rgb, boxes)],
                             "poseapp": lambda: [ours([im], [b]) for im, b in zip(images, boxes)]}, rounds)
        k_theirs = np.concatenate([theirs(im, bboxes=b)[0] for im, b in zip(rgb, boxes)])
        k_ours = np.concatenate([ours([im], [b])[0][0] for im, b in zip(images, boxes)])
        n = sum(len(b) for b in boxes)
        row = {"poseapp_backend": ours.backend, "rtmlib_crops_per_s": n / seconds["rtmlib"],
               "poseapp_crops_per_s": n / seconds["poseapp"], "ratio": seconds["rtmlib"] / seconds["poseapp"],
               "max_keypoint_diff_px": float(np.abs(k_theirs - k_ours).max())}
        results[backend] = row
        print(f"\nrtmlib (onnxruntime, per crop) vs poseapp ({ours.backend}, per image) on RTMPose-m: "
              f"{row['rtmlib_crops_per_s']:.2f} vs {row['poseapp_crops_per_s']:.2f} crops/s = {row['ratio']:.2f}x, "
              f"max keypoint difference {row['max_keypoint_diff_px']:.1e} px")
    return results


if __name__ == "__main__":
    sys.exit(main())
