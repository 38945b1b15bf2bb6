"""The zoo table against the published facts (../shared/zoo/zoo_facts.json): every published model with
weights is an entry with the same numbers and settings, the two without weights are listed as such, and
the rows per published table are the counts of those tables."""
from __future__ import annotations

import json
from collections import Counter

import pytest
from conftest import SHARED

from poseapp.errors import PoseAppError, UnknownNameError
from poseapp.zoo import Unavailable, get_entry, get_recipe, headline_metric, list_recipes, list_unavailable

FACTS_FILE = SHARED / "zoo" / "zoo_facts.json"
needs_facts = pytest.mark.skipif(not FACTS_FILE.is_file(), reason="../shared/zoo/zoo_facts.json is not beside the "
                                 "project (the published facts the zoo is checked against)")

# Not in zoo_facts.json: MMPose's SimCC ResNet-50 (configs/body_2d_keypoint/simcc/coco/resnet_coco.md), added
# for the SimCC family (issue 3).
EXTRA = {"simcc-res50_coco-256x192"}

# The rows of each published table, as the issue lists them ("COCO regression 7+": 7 in the README table and
# 2 more RLE rows of the same md).
TABLE_ROWS = {
    "DeepFashion (fashion_2d_keypoint/topdown_heatmap README)": 6,
    "DeepFashion2 (fashion_2d_keypoint/topdown_heatmap README)": 13,
    "AnimalPose (animal_2d_keypoint/topdown_heatmap README)": 5,
    "AP-10K (animal_2d_keypoint/topdown_heatmap README)": 5,
    "Desert Locust (animal_2d_keypoint/topdown_heatmap README)": 3,
    "Grevy's Zebra (animal_2d_keypoint/topdown_heatmap README)": 3,
    "AnimalKingdom (animal_2d_keypoint/topdown_heatmap README)": 7,
    "COCO regression README": 7,
    "extra (resnet_rle_coco.md, not in README table)": 2,
    "MPII regression (body_2d_keypoint/topdown_regression README)": 4,
    "WFLW face regression (face_2d_keypoint/topdown_regression README)": 3,
    "sithu31296/pose-estimation README (COCO-val, 56.4 det AP)": 4,
    "common COCO heatmap (body_2d_keypoint/topdown_heatmap/coco)": 11,
    "RTMPose body (body_2d_keypoint/rtmpose/coco/rtmpose_coco.md)": 4,
}


@pytest.fixture(scope="module")
def facts() -> dict[str, dict]:
    return {e["name"]: e for e in json.loads(FACTS_FILE.read_text())}


@needs_facts
def test_every_published_model_with_weights_is_an_entry_and_nothing_else(facts):
    with_weights = {n for n, e in facts.items() if e["kind"] == "pose" and e.get("checkpoint_url")}
    without = {n for n, e in facts.items() if e["kind"] == "pose" and not e.get("checkpoint_url")}
    assert {r.name for r in list_recipes()} == with_weights | EXTRA
    assert {u.name for u in list_unavailable()} == without == {"rlepose-w48_coco-384x288", "udp-psa-w48_coco-256x192"}
    not_pose = {n for n, e in facts.items() if e["kind"] != "pose"}  # ImageNet backbones, the CrowdHuman detector
    assert not_pose == {"hrnet-w32_imagenet-backbone", "hrnet-w48_imagenet-backbone", "yolov5m_crowdhuman"}
    for name in not_pose:
        with pytest.raises(UnknownNameError):
            get_entry(name)


@needs_facts
def test_rows_per_published_table(facts):
    zoo = {r.name: r for r in [*list_recipes(), *list_unavailable()]}
    counts = Counter(zoo[n].table for n in zoo if n not in EXTRA and n in facts and facts[n]["kind"] == "pose"
                     and facts[n].get("checkpoint_url"))
    for table, rows in TABLE_ROWS.items():
        assert counts[table] == rows, table
    assert all(zoo[n].table == facts[n]["seed_table"] for n in zoo if n in facts)


@needs_facts
def test_metrics_and_settings_match_the_facts(facts):
    for r in list_recipes():
        if r.name in EXTRA:
            continue
        f = facts[r.name]
        assert r.metrics == f["metrics"], r.name
        assert (r.dataset, r.num_keypoints, list(r.input_size)) == (f["dataset"], f["keypoints"], f["input_size"]), r.name
        assert r.url == f["checkpoint_url"] and r.sha256_prefix == f["sha256_prefix"], r.name
        assert r.bbox_padding == f["bbox_padding"] and list(r.mean) == f["mean"] and list(r.std) == f["std"], r.name
        assert (list(r.heatmap_size) if r.heatmap_size else None) == f.get("heatmap_size"), r.name
        layout = {"0.x": "mmpose-0.x", "1.x": "mmpose-1.x", "n/a": "state_dict"}[f["mmpose_generation"]["guess"]]
        assert r.layout == layout, r.name
        assert r.gdrive_id == (f.get("checkpoint_gdrive") or {}).get("file_id"), r.name
        assert r.backbone.lower().replace("-", "") in f["arch"].lower().replace("-", "") or r.backbone.startswith(
            "CSPNeXt"), r.name
        test_cfg = f.get("test_cfg") or {}
        assert r.flip_test == test_cfg.get("flip_test", False), r.name
        if "shift_heatmap" in test_cfg:
            assert r.shift_heatmap == test_cfg["shift_heatmap"], r.name
        if "shift_coords" in test_cfg:
            assert r.shift_coords == test_cfg["shift_coords"], r.name
        codec = f["codec"]
        if "sigma" in codec:
            assert r.codec_params["sigma"] == codec["sigma"], r.name
        if codec.get("unbiased"):
            assert r.codec == "dark", r.name
        if codec.get("type") == "UDPHeatmap":
            assert r.codec == "udp" and r.warp == "mmpose-udp", r.name
        assert r.licence, r.name
    for u in list_unavailable():
        assert u.metrics == facts[u.name]["metrics"] and u.unavailable


@needs_facts
def test_the_mmpose_hash_prefix_is_in_the_file_name(facts):
    for r in list_recipes():
        if r.source == "mmpose":
            assert r.filename == r.url.rsplit("/", 1)[1] and f"-{r.sha256_prefix}_" in r.filename, r.name
        else:  # Google Drive: no hash published, the sithu31296 file names its loader expects
            assert r.sha256_prefix is None and r.gdrive_id in r.url and r.filename == facts[r.name]["local_filename"]


def test_headline_metric_per_table():
    assert headline_metric({"AR": 0.8, "AP": 0.749}) == ("AP", 0.749)
    assert headline_metric({"AUC": 0.9, "EPE": 2.0, "PCK@0.2": 1.0}) == ("PCK@0.2", 1.0)
    assert headline_metric({"Mean@0.1": 0.2, "Mean": 0.861}) == ("PCKh@0.5", 0.861)
    assert headline_metric({"NME": 4.88}) == ("NME", 4.88)
    assert headline_metric({"PCK@0.05": 0.63, "PCK@0.05_paper": 0.66}) == ("PCK@0.05", 0.63)
    assert headline_metric({}) is None
    assert all(r.headline is not None for r in [*list_recipes(), *list_unavailable()])


def test_names_are_typo_tolerant():
    assert get_recipe("HRNet-W32_coco-256x192").name == "hrnet-w32_coco-256x192"  # case does not matter
    with pytest.raises(UnknownNameError, match="Did you mean: .*hrnet-w32_coco-256x192"):
        get_recipe("hrnet-w32-coco-256x192")
    with pytest.raises(PoseAppError, match="'udp-psa-w48_coco-256x192' .* has no public weights: listed in the "
                       "sithu31296/pose-estimation README without weights or code"):
        get_recipe("udp-psa-w48_coco-256x192")
    assert isinstance(get_entry("udp-psa-w48_coco-256x192"), Unavailable)


def test_dark_and_udp_codecs_take_the_blur_kernel_from_the_recipe():
    from dataclasses import replace

    from poseapp.codecs import build_codec

    dark = get_recipe("hrnet-w32-dark_coco-384x288")
    assert build_codec(dark).blur_kernel_size == 11 == dark.codec_params["blur_kernel_size"]
    assert build_codec(replace(dark, codec_params={"blur_kernel_size": 17})).blur_kernel_size == 17
    assert build_codec(get_recipe("hrnet-w32-udp_coco-256x192")).blur_kernel_size == 11


def test_simcc_heads_are_built_for_each_recipes_split_ratio():
    """The SimCC/SimDR heads are built with 2 bins per input pixel (simcc_heads.SIMCC_SPLIT_RATIO); every recipe
    that decodes vectors must say the same ratio, or its decoder would misplace every keypoint."""
    from poseapp.models.simcc_heads import SIMCC_SPLIT_RATIO

    vector_recipes = [r for r in list_recipes() if r.codec in ("simcc", "simdr")]
    assert len(vector_recipes) >= 8
    assert {r.name: r.simcc_split_ratio for r in vector_recipes if r.simcc_split_ratio != SIMCC_SPLIT_RATIO} == {}
