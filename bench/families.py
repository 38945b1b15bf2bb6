#!/usr/bin/env python3
"""Model-only speed of every model family, as ratios against one baseline taken in the same run.

For each family one parity checkpoint (deterministic random weights in the published layout, regenerated
into a temporary folder by ``../shared/parity/make_checkpoint.py``; speed does not depend on the values)
is loaded through ``create_model(path, arch=ZOO_NAME)``, like a user's file. Each gets the same real crops
(the real detector's person boxes on the COCO, CrowdPose and PoseTrack18 images of ``../shared/data``,
cut with that model's own recipe), and ``estimator.forward`` (network + flip test, as published) is timed
at each batch size (median call). The baseline is the default model (HRNet-W32 heatmap, 256x192) at
batch 1.

    python bench/families.py                          # batch 1 and 8, about 5 minutes on 2 CPU cores
    python bench/families.py --batch-sizes 1,8,32 --seconds 2 --json runs/families.json
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (bench/bench.py: frames, crops and timing helpers)

# family -> (parity fixture whose manifest gives the checkpoint, zoo recipe, layout)
FAMILIES = {
    "heatmap HRNet-W32 (baseline)": ("coco_hrnet-w32_hm", "hrnet-w32_coco-256x192", "1x"),
    "heatmap ResNet-50": ("coco_res50_hm", "res50_coco-256x192", "1x"),
    "heatmap CSPNeXt-m UDP": ("ap10k_cspnext-m_udp", "cspnext-m-udp_ap10k-256x256", "1x"),
    "DeepPose ResNet-50": ("coco_res50_deeppose", "res50-deeppose_coco-256x192", "1x"),
    "RLE ResNet-50": ("coco_res50_rle", "res50-rle_coco-256x192", "1x"),
    "RLE MobileNetV2": ("coco_mobilenetv2_rle", "mobilenetv2-rle_coco-256x192", "1x"),
    "SimCC ResNet-50": ("coco_simcc_res50", "simcc-res50_coco-256x192", "1x"),
    "RTMPose-m": ("coco_rtmpose-m", "rtmpose-m_coco-256x192", "1x"),
    "PoseHRNet-W32 (sithu)": ("sithu_posehrnet-w32", "posehrnet-w32_coco-256x192", "sithu"),
    "SimDR-W32 (sithu)": ("sithu_simdr-w32", "simdr-w32_coco-256x192", "sithu"),
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    p.add_argument("--batch-sizes", default="1,8", help="comma-separated (default: %(default)s)")
    p.add_argument("--backend", default="torch", help="auto, torch, onnxruntime, openvino (default: %(default)s)")
    p.add_argument("--precision", default=None, help="fp32, bf16, fp16 (default: fp32)")
    p.add_argument("--seconds", type=float, default=3.0, help="timed seconds per batch size (default: %(default)s)")
    p.add_argument("--min-calls", type=int, default=2, help="timed calls at least (default: %(default)s)")
    p.add_argument("--only", default=None, help="comma-separated substrings of family names to run")
    p.add_argument("--json", type=Path, default=None, help="also save the numbers to this JSON file")
    args = p.parse_args(argv)
    sizes = [int(b) for b in args.batch_sizes.split(",")]

    import torch

    from poseapp.create import create_model, resolve_device
    from poseapp.boxes import YoloDetector
    from poseapp.estimator import make_crops
    from poseapp.results import Frame

    device = resolve_device(args.device)
    clock = bench.Clock(device)
    frames = bench.load_frames(bench.real_image_paths())
    detector = YoloDetector(bench.DEFAULT_DETECTOR, classes=(0,), device=device)
    boxes = [d.boxes for d in detector([Frame(image=f, source=f"f{i}") for i, f in enumerate(frames)])]
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{sum(map(len, boxes))} real person boxes on {len(frames)} images", flush=True)
    families = {k: v for k, v in FAMILIES.items()
                if args.only is None or any(s.lower() in k.lower() for s in args.only.split(","))}
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="poseapp-families-") as tmp:
        for family, (fixture, zoo_name, layout) in families.items():
            print(f"{family}: {zoo_name}", flush=True)
            estimator = create_model(bench.make_checkpoint(fixture, layout, Path(tmp)), arch=zoo_name, device=device,
                                     backend=args.backend, precision=args.precision)
            crops = make_crops(frames, boxes, estimator.recipe).pixels
            per_batch = bench.time_model_only(estimator, crops, sizes, args.seconds, 1, args.min_calls, clock)
            results[family] = {"recipe": zoo_name, "flip_test": estimator.flip_test,
                               "params_m": bench.params_m(estimator.recipe), "backend": estimator.backend,
                               "crops_per_s": {str(b): v["crops_per_s"] for b, v in per_batch.items()}}
            del estimator
    base = next(iter(results.values()))["crops_per_s"][str(sizes[0])]
    print(f"\nmodel-only crops/s (flip test as published); x = ratio to the first row at batch {sizes[0]}")
    print(f"{'family':<30} {'params':>7} " + " ".join(f"{'batch ' + str(b):>16}" for b in sizes))
    for family, r in results.items():
        cells = " ".join(f"{r['crops_per_s'][str(b)]:8.2f} ({r['crops_per_s'][str(b)] / base:4.2f}x)" for b in sizes)
        print(f"{family:<30} {r['params_m']:6.1f}M {cells}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"device": device, "torch": torch.__version__,
                                         "threads": torch.get_num_threads(), "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
