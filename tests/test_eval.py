"""``python infer.py eval``: MMPose 1.3.2's printed metrics reproduced from saved predictions for every data set
of ../shared/metrics, ground truth scored as its own prediction, and a real model run end to end on COCO
(ground-truth boxes and the detections file behind the published numbers)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

from conftest import DATA, SHARED, needs_shared
from poseapp.cli import main
from poseapp.evaluation.runner import read_predictions, to_results
from poseapp.evaluation.types import KeypointPrediction

pytestmark = [needs_shared, pytest.mark.usefixtures("reuse_loaded_models")]

METRICS = SHARED / "metrics"
# fixture file -> the data set name eval takes (the zoo's dataset names)
FIXTURES = {"coco": "coco", "crowdpose": "crowdpose", "ap10k": "ap10k", "animalpose": "animalpose", "mpii": "mpii",
            "ak": "animalkingdom", "locust": "locust", "zebra": "zebra", "fld": "deepfashion_full",
            "deepfasion2": "deepfashion2", "wflw": "wflw"}
COCO_ANN = DATA / "coco" / "test_coco.json"
COCO_DETS = DATA / "coco" / "test_coco_det_AP_H_56.json"


def cli(*args) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def fixture(name: str) -> dict:
    return json.loads((METRICS / "public" / f"{name}.json").read_text())


def fixture_predictions(fx: dict) -> list[KeypointPrediction]:
    return [KeypointPrediction(p["id"], p["image_id"], int(np.ravel(p["category_id"])[0]),  # MPII's is [1]
                               np.asarray(p["bbox"], np.float32).reshape(4),
                               float(np.float32(p["bbox_score"])), np.asarray(p["keypoints"], np.float32),
                               np.asarray(p["keypoint_scores"], np.float32),
                               float(np.asarray(p["mmpose_eval_inputs"]["nms_area"]).reshape(-1)[0]))
            for p in fx["predictions"]]


def scored(tmp_path: Path, name: str, predictions: list[KeypointPrediction], *extra) -> dict:
    """``eval --predictions`` on ``predictions`` (written as `eval --json` writes them) -> the metrics dict."""
    fx = fixture(name)
    path = tmp_path / f"{name}.predictions.json"
    path.write_text(json.dumps(to_results(predictions, [p.bbox_score for p in predictions])))
    out = tmp_path / f"{name}.out"
    args = ["eval", "--predictions", path, "--dataset", FIXTURES[name], "--ann", DATA / fx["annotation_file"],
            "--json", "--out", out, *extra]
    if name == "mpii":
        args += ["--headboxes", METRICS / "aux" / "mpii_headboxes_derived.mat"]
    result = cli(*args)
    assert result.exit_code == 0, result.output
    return json.loads((out / "metrics.json").read_text())["metrics"]


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_saved_predictions_reproduce_mmpose(tmp_path, name):
    fx = fixture(name)
    ours = scored(tmp_path, name, fixture_predictions(fx))
    assert set(ours) == set(fx["metrics"])
    for key, value in fx["metrics"].items():
        assert ours[key] == pytest.approx(value, abs=1e-6), key


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_ground_truth_scores_perfect(tmp_path, name):
    """Each annotated instance predicted at its ground truth (score 1, on its own box): AP/AR 1, PCK 1 (MPII
    100), EPE 0, NME 0; MMPose's AUC peaks at 0.95 (its first threshold is 0 and a hit is d < thr)."""
    from poseapp.evaluation.scoring import read_eval_set

    fx = fixture(name)
    headboxes = METRICS / "aux" / "mpii_headboxes_derived.mat" if name == "mpii" else None
    eval_set = read_eval_set(FIXTURES[name], DATA / fx["annotation_file"], DATA / fx["images_dir"], headboxes)
    predictions = [KeypointPrediction(g.id, g.image_id, g.category_id, g.bbox, 1.0, g.keypoints,
                                      np.ones(len(g.keypoints), np.float32), float(np.prod(g.bbox[2:] - g.bbox[:2])))
                   for g in eval_set.instances]
    ours = scored(tmp_path, name, predictions)
    assert set(ours) == set(fx["metrics"])
    perfect = {"EPE": 0.0, "NME": 0.0, "AUC": 0.95, "PCK": 100.0 if name == "mpii" else 1.0, "PCK@0.1": 100.0}
    for key, value in ours.items():
        if key.endswith(("/AP", "/AR", "/AP .5", "/AR .5", "/AP .75", "/AR .75")):
            assert value == pytest.approx(1.0), key
        elif key in perfect:
            assert value == pytest.approx(perfect[key]), key
        elif key.endswith(" PCK"):  # MPII per-part rows
            assert value == pytest.approx(100.0), key


def test_eval_runs_a_model_on_coco_with_ground_truth_boxes_and_with_detections(tmp_path, make_checkpoint):
    """The parity checkpoint of coco_hrnet-w32_hm (random weights: AP near 0) through eval, batched: AP/AR
    reported beside the published row; on the boxes MMPose's parity run used, the saved predictions are
    MMPose's to 1e-3 px; they score the same again from the file; with the detections file the model runs
    on the file's person boxes."""
    from poseapp.evaluation.datasets import read_coco_style, read_detections

    ckpt = make_checkpoint("coco_hrnet-w32_hm")
    model = ["--model", ckpt, "--arch", "hrnet-w32_coco-256x192", "--batch-size", 8]
    out = tmp_path / "gt"
    result = cli("eval", *model, "--ann", COCO_ANN, "--json", "--out", out)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("hrnet-w32_coco-256x192 on coco (test_coco.json, 12 annotated instances, 12 predicted "
                               "on ground-truth boxes)")
    row = next(line for line in lines if line.split()[0] == "AP")
    saved = json.loads((out / "metrics.json").read_text())
    assert float(row.split()[1]) == pytest.approx(saved["metrics"]["coco/AP"], abs=5e-5)
    assert row.split()[2] == "0.749"  # the published AP, beside ours
    assert {"coco/AP", "coco/AR", "coco/AP .5", "coco/AR (L)"} <= set(saved["metrics"])
    assert "s per 100 instances" in result.stderr

    # where the parity fixture ran MMPose on exactly a ground-truth box, eval's prediction is MMPose's
    from conftest import load_fixture

    eval_set = read_coco_style(COCO_ANN, COCO_ANN.parent, "coco")
    predictions = {p.id: p for p in read_predictions(out / "predictions.json")}
    fx = load_fixture("coco_hrnet-w32_hm")
    compared = 0
    for box, keypoints, scores in zip(fx["bboxes"], fx["keypoints_flip"], fx["keypoint_scores_flip"]):
        same = [g for g in eval_set.instances if np.array_equal(g.bbox, box)]
        if same:
            np.testing.assert_allclose(predictions[same[0].id].keypoints, keypoints, atol=1e-3)
            np.testing.assert_allclose(predictions[same[0].id].keypoint_scores, scores, rtol=1e-5)  # float noise
            compared += 1
    assert compared >= 4
    again = cli("eval", "--predictions", out / "predictions.json", "--dataset", "coco", "--ann", COCO_ANN, "--json",
                "--out", tmp_path / "again")
    assert again.exit_code == 0, again.output
    assert json.loads((tmp_path / "again" / "metrics.json").read_text())["metrics"] == saved["metrics"]

    det_out = tmp_path / "det"
    result = cli("eval", *model, "--ann", COCO_ANN, "--boxes", COCO_DETS, "--json", "--out", det_out)
    assert result.exit_code == 0, result.output
    boxes = read_detections(COCO_DETS, eval_set)
    assert f"{len(boxes)} predicted on boxes {COCO_DETS}" in result.stdout
    det_predictions = read_predictions(det_out / "predictions.json")
    assert [p.id for p in det_predictions] == list(range(len(boxes)))
    np.testing.assert_array_equal(np.stack([p.bbox for p in det_predictions]), np.stack([b.bbox for b in boxes]))
    det_metrics = json.loads((det_out / "metrics.json").read_text())["metrics"]
    assert set(det_metrics) == set(saved["metrics"]) and all(-1 <= v <= 1 for v in det_metrics.values())


def test_rle_models_rank_instances_as_their_configs_do(tmp_path, make_checkpoint):
    """MMPose's COCO RLE configs evaluate with CocoMetric(score_mode='bbox_rle'); eval picks it from the model
    (and --score-mode overrides it)."""
    from poseapp.evaluation.coco_metric import coco_keypoint_metrics
    from poseapp.keypoints import get_keypoint_set

    out = tmp_path / "rle"
    result = cli("eval", "--model", make_checkpoint("coco_res50_rle"), "--arch", "res50-rle_coco-256x192", "--ann",
                 COCO_ANN, "--no-flip", "--json", "--out", out)
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["score_mode"] == "bbox_rle"
    predictions = read_predictions(out / "predictions.json")
    results = json.loads((out / "predictions.json").read_text())
    for p, r in zip(predictions, results):
        assert r["score"] == pytest.approx(1.0 + float(np.mean(p.keypoint_scores)) + float(np.max(p.keypoint_scores)))
    sigmas = get_keypoint_set("coco").sigmas
    assert saved["metrics"] == coco_keypoint_metrics(COCO_ANN, predictions, sigmas=sigmas, score_mode="bbox_rle")
    again = cli("eval", "--predictions", out / "predictions.json", "--dataset", "coco", "--ann", COCO_ANN,
                "--score-mode", "bbox_rle", "--json", "--out", tmp_path / "again")
    assert again.exit_code == 0, again.output
    assert json.loads((tmp_path / "again" / "metrics.json").read_text())["metrics"] == saved["metrics"]


@pytest.mark.parametrize("name, fixture_name, zoo_name", [
    ("mpii", "mpii_res50_rle", "res50-rle_mpii-256x256"),
    ("deepfasion2", "deepfashion2-lsdress_res50_hm", "res50_deepfashion2-long-sleeved-dress-256x192"),
    ("wflw", "wflw_res50_reg", "res50-deeppose_wflw-256x256"),
])
def test_eval_runs_a_model_with_every_reader(tmp_path, make_checkpoint, name, fixture_name, zoo_name):
    """MPII's list (with head boxes), a DeepFashion2 category model (its 37 keypoints placed among the 294) and
    WFLW's centre/scale boxes, each through a model: the data set's printed metrics, one prediction a box."""
    from poseapp.zoo import get_recipe

    fx = fixture(name)
    out = tmp_path / "out"
    args = ["eval", "--model", make_checkpoint(fixture_name), "--arch", zoo_name, "--ann", DATA / fx["annotation_file"],
            "--images", DATA / fx["images_dir"], "--no-flip", "--json", "--out", out]
    if name == "mpii":
        args += ["--headboxes", METRICS / "aux" / "mpii_headboxes_derived.mat"]
    result = cli(*args)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    assert set(metrics) == set(fx["metrics"])
    predictions = read_predictions(out / "predictions.json")
    assert len(predictions) == fx["test_dataset"]["num_samples_evaluated"]
    recipe = get_recipe(zoo_name)
    if recipe.keypoint_range is not None:
        start, stop = recipe.keypoint_range
        for p in predictions:
            assert len(p.keypoints) == 294 and np.all(p.keypoint_scores[:start] == 0)
            assert np.all(p.keypoints[stop:] == 0) and np.any(p.keypoints[start:stop] != 0)


def test_eval_errors_are_one_line(tmp_path, make_checkpoint):
    def error(result: Result) -> str:
        assert result.exit_code == 2, result.output
        (line,) = [x for x in result.stderr.splitlines() if x.startswith("error:")]
        return line

    assert "--predictions needs --dataset" in error(cli("eval", "--predictions", tmp_path / "p.json", "--ann",
                                                         COCO_ANN))
    assert "pass --model NAME" in error(cli("eval", "--ann", COCO_ANN))
    assert "unknown data set 'cocoo'. Did you mean: coco" in error(cli("eval", "--predictions", tmp_path / "p.json",
                                                                        "--dataset", "cocoo", "--ann", COCO_ANN))
    line = error(cli("eval", "--model", "res50_zebra-160x160", "--ann", DATA / "zebra" / "test_zebra.json",
                     "--boxes", COCO_DETS))
    assert "zebra's metric pairs each prediction with its annotated instance: drop --boxes" in line
    assert f"annotation file {tmp_path / 'no.json'} does not exist" in error(
        cli("eval", "--predictions", tmp_path / "p.json", "--dataset", "coco", "--ann", tmp_path / "no.json"))
    assert "is not MPII's JSON list" in error(cli("eval", "--predictions", tmp_path / "p.json", "--dataset", "mpii",
                                                  "--ann", COCO_ANN))
    assert f"predictions file {tmp_path / 'p.json'} does not exist" in error(
        cli("eval", "--predictions", tmp_path / "p.json", "--dataset", "coco", "--ann", COCO_ANN))
    line = error(cli("eval", "--model", tmp_path / "missing.pth", "--ann", COCO_ANN))  # eval's own flag names
    assert "does not exist (check --model," in line and "--pose" not in line
    line = error(cli("eval", "--model", make_checkpoint("coco_res50_hm"), "--arch", "hrnet-w32_coco-256x192",
                     "--ann", COCO_ANN))
    assert "does not fit hrnet-w32_coco-256x192" in line and "pass --arch with the zoo name" in line


def test_eval_json_never_overwrites_its_inputs(tmp_path):
    """Re-scoring runs/eval/predictions.json with --json into runs/eval would replace the input with its
    re-scored copy: refused before anything is read, the input unchanged."""
    saved = tmp_path / "runs" / "eval" / "predictions.json"
    saved.parent.mkdir(parents=True)
    saved.write_text("[]")
    result = cli("eval", "--predictions", saved, "--dataset", "coco", "--ann", tmp_path / "ann.json", "--json",
                 "--out", saved.parent)
    assert result.exit_code == 2, result.output
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert line == (f"error: --out {saved.parent} would overwrite the input --predictions {saved} with the new "
                    f"predictions.json; choose another --out (e.g. runs/eval2)")
    assert saved.read_text() == "[]"


@needs_shared
def test_eval_with_the_wrong_dataset_for_the_file_is_one_line(tmp_path):
    """WFLW annotations carry center/scale, COCO's a bbox: --dataset wflw on a COCO file says so."""
    result = cli("eval", "--predictions", tmp_path / "p.json", "--dataset", "wflw", "--ann", COCO_ANN)
    assert result.exit_code == 2, result.output
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert "lacks 'center': is --dataset wflw the data set of this file?" in line
