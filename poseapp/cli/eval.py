"""``python infer.py eval``: a model's published metric on a data set, or the metric of saved predictions.

Parsing, printing and exit codes only (as all of poseapp.cli): readers and metrics are poseapp.evaluation.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from poseapp.cli.common import configure_logging, fail, offline_from_env, option_flags
from poseapp.runtimes.base import BACKENDS, PRECISION_CHOICES





@click.command("eval")
@click.option("--model", "-m", default=None, help="Zoo name (python infer.py models), checkpoint path, or an "
              ".onnx/.xml model file.")
@click.option("--arch", default=None, help="For a checkpoint or .onnx/.xml path: the zoo name whose recipe it follows.")
@click.option("--recipe", default=None, type=click.Path(dir_okay=False),
              help="For an .onnx/.xml model without a poseapp recipe: its recipe JSON file (predict's --pose-recipe).")
@click.option("--ann", "ann_file", required=True, type=click.Path(dir_okay=False),
              help="Annotation file (COCO-style JSON, or MPII's JSON list).")
@click.option("--images", default=None, type=click.Path(file_okay=False),
              help="Folder the annotation file's image names are relative to (default: the annotation file's).")
@click.option("--boxes", "boxes_file", default=None, type=click.Path(dir_okay=False),
              help="COCO detection results (e.g. COCO_val2017_detections_AP_H_56_person.json) instead of the "
              "ground-truth boxes (COCO-style AP data sets).")
@click.option("--dataset", default=None, help="Whose metric applies: coco, crowdpose, mpii, ap10k, animalpose, "
              "animalkingdom, locust, zebra, deepfashion_upper/lower/full, deepfashion2, wflw (default: the model's).")
@click.option("--headboxes", default=None, type=click.Path(dir_okay=False),
              help="MPII: the head boxes (mpii_gt_val.mat) PCKh is normalised by.")
@click.option("--predictions", "predictions_file", default=None, type=click.Path(dir_okay=False),
              help="Score saved predictions (what --json writes) instead of running a model; needs --dataset.")
@click.option("--score-mode", default=None, type=click.Choice(["bbox_keypoint", "bbox_rle", "bbox", "keypoint"]),
              help="COCO-style AP: the instance score (default: the model's published config; bbox_rle for RLE "
              "models, else bbox_keypoint; with --predictions and no --model, bbox_keypoint).")
@click.option("--json", "save_json", is_flag=True, help="Save predictions.json (COCO results) and metrics.json.")
@click.option("--out", "out_dir", default="runs/eval", show_default=True, type=click.Path(file_okay=False),
              help="Folder for --json.")
@click.option("--device", default="auto", show_default=True,
              help="auto, cpu, cuda, cuda:N (or N) or mps; checked against what this machine has.")
@click.option("--half", is_flag=True, help="float16 inference (CUDA): --precision fp16.")
@click.option("--backend", default="auto", show_default=True, type=click.Choice(BACKENDS, case_sensitive=False),
              help="Pose network runtime (as predict's).")
@click.option("--precision", default=None, type=click.Choice(PRECISION_CHOICES, case_sensitive=False),
              show_default="fp32; an export's own", help="fp32 gives the published accuracy; bf16, fp16 as predict's.")
@click.option("--threads", default=None, type=click.IntRange(1),
              show_default="the CPUs this process may use; torch: its own setting",
              help="CPU threads for the pose network.")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(1), help="Crops per forward pass.")
@click.option("--max-pixels", default=16384 * 16384, show_default=True, type=click.IntRange(1),
              help="Refuse images with more pixels (read from the header, before decoding).")
@click.option("--no-flip", is_flag=True, help="Turn off the flip test (on in the published configs).")
@click.option("--offline", is_flag=True, help="No network (as POSEAPP_OFFLINE=1).")
@click.option("--verbose", "-v", is_flag=True, help="Log details; show tracebacks on errors.")
def eval_command(**opts: Any) -> None:
    """Run a model over an annotated data set and print its metric next to the published number.

    \b
      python infer.py eval --model hrnet-w32_coco-256x192 --ann person_keypoints_val2017.json \\
          --images val2017/ --boxes COCO_val2017_detections_AP_H_56_person.json
      python infer.py eval --model res50-rle_mpii-256x256 --ann mpii_val.json --images images/ \\
          --headboxes mpii_gt_val.mat
      python infer.py eval --predictions runs/eval/predictions.json --dataset coco --ann person_keypoints_val2017.json

    The metric is the one the model's published table uses, computed as MMPose 1.3.2's evaluator does:
    COCO-style AP/AR (OKS with the data set's sigmas, instance rescoring, OKS-NMS; pycocotools), PCK@0.2,
    AUC and EPE, PCK@0.05 (Animal Kingdom), PCKh@0.5 and @0.1 (MPII), NME (WFLW).
    """
    from poseapp.errors import PoseAppError

    configure_logging(opts["verbose"])
    opts["offline"] = opts["offline"] or offline_from_env()
    try:
        _eval(opts)
    except PoseAppError as e:
        fail(e.render(option_flags(eval_command)), opts["verbose"])
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)


def _eval(opts: dict[str, Any]) -> None:
    from poseapp.errors import PoseAppError
    from poseapp.evaluation.datasets import read_detections
    from poseapp.evaluation.scoring import read_eval_set, score, score_mode_for, settings_for

    opts["out_dir"] = str(Path(opts["out_dir"]).expanduser())
    if opts["save_json"]:  # before the model runs: a refused or unwritable --out costs nothing
        _check_outputs_apart(opts)
        from poseapp.sinks import next_run_dir

        next_run_dir(Path(opts["out_dir"]), exist_ok=True)  # creates it and checks it can be written
    recipe = model = None
    if opts["model"] is not None:
        from poseapp.create import resolve_model

        model = resolve_model(opts["model"], opts["arch"], opts["recipe"])  # once: create_model takes it as it is
        recipe = model.recipe
    elif opts["predictions_file"] is None:
        raise PoseAppError("pass --model NAME to run a model, or --predictions FILE --dataset NAME to score saved "
                           "predictions")
    dataset = opts["dataset"] or (recipe.dataset if recipe is not None else None)
    if dataset is None:
        raise PoseAppError("--predictions needs --dataset NAME (coco, mpii, ap10k, ...: whose metric applies)")
    settings = settings_for(dataset)
    if opts["boxes_file"] and not settings.detections:
        raise PoseAppError(f"--boxes replaces the ground-truth boxes for COCO-style AP; {dataset}'s metric pairs each "
                           "prediction with its annotated instance: drop --boxes")
    if opts["boxes_file"] and opts["predictions_file"]:
        raise PoseAppError("--boxes is for running a model; saved --predictions already hold their boxes")
    ann = Path(opts["ann_file"])
    images = Path(opts["images"]) if opts["images"] else ann.parent
    eval_set = read_eval_set(dataset, ann, images, opts["headboxes"])
    start = time.perf_counter()
    if opts["predictions_file"]:
        from poseapp.evaluation.runner import read_predictions

        predictions, boxes_note = read_predictions(opts["predictions_file"]), f"predictions {opts['predictions_file']}"
    else:
        boxes = read_detections(opts["boxes_file"], eval_set) if opts["boxes_file"] else eval_set.gt_boxes()
        boxes_note = f"boxes {opts['boxes_file']}" if opts["boxes_file"] else "ground-truth boxes"
        predictions = _run_model(opts, model, boxes, eval_set.num_keypoints)
    run_time = time.perf_counter() - start
    opts["score_mode"] = opts["score_mode"] or score_mode_for(recipe)
    metrics = score(dataset, eval_set, predictions, opts["score_mode"])
    _print(recipe, dataset, eval_set, boxes_note, metrics, len(predictions), run_time, bool(opts["predictions_file"]))
    if opts["save_json"]:
        _save(opts, recipe, dataset, eval_set, boxes_note, predictions, metrics)


_OUTPUTS = ("predictions.json", "metrics.json")
_INPUT_FLAGS = {"predictions_file": "--predictions", "ann_file": "--ann", "boxes_file": "--boxes",
                "headboxes": "--headboxes"}


def _check_outputs_apart(opts: dict[str, Any]) -> None:
    """--json writes predictions.json and metrics.json into --out: refuse, before anything runs, when one
    of them is an input file (re-scoring runs/eval/predictions.json into runs/eval would replace it)."""
    from poseapp.errors import OutputError
    from poseapp.outputs import same_file

    for key, flag in _INPUT_FLAGS.items():
        if not opts.get(key):
            continue
        for name in _OUTPUTS:
            target = Path(opts["out_dir"]) / name
            if same_file(target, opts[key]):
                raise OutputError(f"--out {opts['out_dir']} would overwrite the input {flag} {opts[key]} with "
                                  f"the new {name}; choose another --out (e.g. runs/eval2)")


def _run_model(opts: dict[str, Any], model, boxes, num_keypoints: int):
    from tqdm import tqdm

    from poseapp.create import create_model
    from poseapp.evaluation.runner import estimate_boxes

    estimator = create_model(model, device=opts["device"], half=opts["half"], backend=opts["backend"],
                             precision=opts["precision"], threads=opts["threads"], batch_size=opts["batch_size"],
                             flip_test=False if opts["no_flip"] else None,
                             offline=opts["offline"])
    with tqdm(total=len(boxes), unit="instance", dynamic_ncols=True, leave=False) as bar:
        return estimate_boxes(estimator, boxes, num_keypoints=num_keypoints, progress=bar.update,
                       max_pixels=opts["max_pixels"])


def _print(recipe, dataset: str, eval_set, boxes_note: str, metrics: dict[str, float], count: int,
           seconds: float, saved: bool) -> None:
    from poseapp.evaluation.scoring import table_row

    who = recipe.name if recipe is not None else "predictions"
    click.echo(f"{who} on {dataset} ({eval_set.ann_file.name}, {len(eval_set.instances)} annotated instances, "
               f"{count} predicted on {boxes_note}):")
    rows = table_row(metrics, recipe.metrics if recipe is not None else {}, dataset)
    width = max([len("metric"), *(len(r.name) for r in rows)])
    header = f"  {'metric':<{width}}  {'ours':>10}" + ("  published" if recipe is not None else "")
    click.echo(header)
    for r in rows:
        published = "" if r.published is None else f"  {r.published:>9g}"
        click.echo(f"  {r.name:<{width}}  {r.ours:>10.4f}{published}".rstrip())
    if not saved and count:
        click.echo(f"  model time: {seconds:.1f} s ({100 * seconds / count:.2f} s per 100 instances)", err=True)


def _save(opts, recipe, dataset, eval_set, boxes_note, predictions, metrics) -> None:
    from poseapp.errors import OutputError
    from poseapp.evaluation.coco_metric import rescore
    from poseapp.evaluation.runner import to_results, write_json

    out = Path(opts["out_dir"])
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create --out {out}: {e} (pick a writable folder)") from e
    write_json(out / "predictions.json", to_results(predictions, rescore(predictions, opts["score_mode"])))
    write_json(out / "metrics.json", {"model": recipe.name if recipe is not None else None, "dataset": dataset,
                                      "ann_file": str(eval_set.ann_file), "boxes": boxes_note,
                                      "score_mode": opts["score_mode"], "metrics": metrics,
                                      "published": recipe.metrics if recipe is not None else None})
    click.echo(f"predictions and metrics saved to {out}", err=True)
