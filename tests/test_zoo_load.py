"""Every zoo entry is runnable: its architecture builds, and a checkpoint in the entry's published layout
(``recipe.layout``) loads strictly through ``load_weights``, the code path a downloaded file takes.

For each entry the test writes a checkpoint file with deterministic values and checks that every parameter
and buffer of the model then holds exactly the value written (and held something else before), so a key
that is silently skipped, dropped or swapped cannot pass. Where the checkpoint's keys come from:

* **an exact parity manifest** (../shared/parity/manifests): the key list, order, shapes and dtypes are the
  reference implementation's, not our model's. A manifest fits an entry when its ``config`` is the entry's
  ``config_path`` in ../shared/zoo/zoo_facts.json (for an entry that file does not list, the config the
  MMPose 1.x file name ``<config>-<sha256[:8]>_<date>.pth`` names) and its layout (``.1x`` / ``.0x``) is the
  entry's; ``sithu_<model>.json`` fits the sithu31296 entry ``<model>_coco-...``.
* **the architecture itself** otherwise: our model's state dict renamed to the published layout (0.x:
  ``keypoint_head.*``; sithu31296: ``final_layer.*`` / ``mlp_head_{x,y}.*``), plus the RLE flow model's
  training-only keys (``head.loss_module.flow_model.*``, 0.x ``keypoint_head.loss.flow_model.*``) that
  published RLE files carry. For those entries whose backbone (``recipe.backbone``) has a parity manifest
  (the same network for another data set, input size or head), the ``backbone.*`` part of our state dict
  is also checked against every such manifest key for key, in order, with shapes, which ties them to the
  published layout too.

Counts with ../shared beside the project, for zoo.json at the time of writing (79 entries with weights):
18 entries use an exact manifest (16 MMPose configs, one of them, simcc-res50_coco-256x192, found by its
file name because zoo_facts.json does not list it; and the 2 sithu31296 models PoseHRNet-W32 and
SimDR-W32), 61 are built from the architecture, and 42 of those 61 get the backbone check (ResNet-50,
HRNet-W32, HRNet-W48 including sithu's SimDR-W48); the other 19 (ResNet-101 and ResNet-152 with any head,
RTMPose-t/s/l) have no manifest for their backbone. Without ../shared all 79 are built from the
architecture and the manifest tests are skipped.

Each checkpoint is written to tmp_path and deleted after loading (HRNet-W48 files are ~250 MB).
"""
from __future__ import annotations

import json
import math
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import PARITY, SHARED, needs_shared
from poseapp.models import build_model, load_weights
from poseapp.zoo import Recipe, list_recipes

ZOO = list_recipes()
MANIFESTS = PARITY / "manifests"
FACTS = SHARED / "zoo" / "zoo_facts.json"
SUFFIX = {"mmpose-1.x": "1x", "mmpose-0.x": "0x", "state_dict": "sithu"}  # recipe.layout -> manifest layout

# RealNVP flow of MMPose's RLELoss (notes.md "RLE checkpoints"), in the order published files hold it,
# under its 1.x name: buffers loc [2], cov [2,2], mask [6,2], then 6 scale and 6 translation nets, each
# Linear 2 -> 64 -> 64 -> 2 at indices 0, 2, 4 of an nn.Sequential.
_LINEARS = ((0, (64, 2)), (2, (64, 64)), (4, (2, 64)))
FLOW = [("head.loss_module.flow_model.loc", (2,)), ("head.loss_module.flow_model.cov", (2, 2)),
        ("head.loss_module.flow_model.mask", (6, 2))] + [
    (f"head.loss_module.flow_model.{net}.{i}.{j}.{part}", shape if part == "weight" else shape[:1])
    for net in ("s", "t") for i in range(6) for j, shape in _LINEARS for part in ("weight", "bias")
]


# ------------------------------------------------------------------------------------ the data to match
@lru_cache(maxsize=None)
def manifests() -> dict[str, dict]:
    """Every parity manifest by file stem (``coco_res50_hm.1x``, ``sithu_simdr-w32``); {} without ../shared."""
    if not MANIFESTS.is_dir():
        return {}
    return {p.name[: -len(".json")]: json.loads(p.read_text()) for p in sorted(MANIFESTS.glob("*.json"))}


@lru_cache(maxsize=None)
def facts() -> dict[str, dict]:
    """zoo_facts.json rows by zoo name; {} without ../shared."""
    return {row["name"]: row for row in json.loads(FACTS.read_text())} if FACTS.is_file() else {}


def config_of(recipe: Recipe) -> str | None:
    """The MMPose config an entry was trained with: zoo_facts' ``config_path``, or for an entry zoo_facts
    does not list, the parity manifest config whose name the 1.x file name starts with (publish_model.py
    names files ``<config>-<sha256[:8]>_<date>.pth``)."""
    if recipe.name in facts():
        return facts()[recipe.name].get("config_path")
    for manifest in manifests().values():
        stem = Path(manifest["config"]).name.removesuffix(".py")
        if recipe.filename and recipe.filename.startswith(stem + "-"):
            return manifest["config"]
    return None


def exact_manifest(recipe: Recipe) -> dict | None:
    """The parity manifest of exactly this entry's network and published layout, or None."""
    if recipe.layout == "state_dict":  # sithu31296: sithu_<model>.json <-> <model>_coco-...
        return manifests().get("sithu_" + recipe.name.split("_")[0])
    config = config_of(recipe)
    fits = [m for m in manifests().values()
            if config and m["config"] == config and m["layout"] == SUFFIX[recipe.layout]]
    assert len(fits) <= 1, f"{recipe.name}: several manifests fit: {[m['name'] for m in fits]}"
    return fits[0] if fits else None


def backbone_manifests(backbone: str) -> list[dict]:
    """The exact manifests of the zoo entries whose backbone is ``backbone`` (``ResNet-50``, ``HRNet-W48``: the
    published table's name), whatever their head, data set or input size: their ``backbone.*`` keys are that
    backbone's published layout."""
    found = {id(m): m for r in ZOO if r.backbone == backbone for m in [exact_manifest(r)] if m is not None}
    return list(found.values())


def backbone_cases() -> list[Recipe]:
    """Entries built from the architecture whose backbone has a manifest (none without ../shared)."""
    return [r for r in ZOO if exact_manifest(r) is None and backbone_manifests(r.backbone)]


BACKBONE_CASES = backbone_cases()


# ---------------------------------------------------------------------------- published names, both ways
def published_name(key: str, layout: str) -> str:
    """Our (MMPose 1.x) key as a checkpoint in ``layout`` names it (notes.md: 0.x ``keypoint_head.*`` and
    RLELoss under ``loss``; sithu31296: the head's layers at the top level)."""
    if layout == "mmpose-0.x" and key.startswith("head."):
        return "keypoint_head." + key[len("head."):].replace("loss_module.", "loss.", 1)
    if layout == "state_dict" and key.startswith("head."):
        return key[len("head."):]
    return key


def our_name(key: str, layout: str) -> str | None:
    """The key our model has for a published ``key`` in ``layout``; None for training-only keys (RLE flow),
    which a loader must drop."""
    if layout == "mmpose-0.x" and key.startswith("keypoint_head."):
        key = "head." + key[len("keypoint_head."):]
    elif layout == "state_dict" and not key.startswith("backbone."):
        key = "head." + key
    return None if {"loss", "loss_module"} & set(key.split(".")[:-1]) else key


# ------------------------------------------------------------------------------------------ the values
_POOL_SIZE = 1_000_003  # prime, so that no tensor's shape lines up with the pool's period


@lru_cache(maxsize=1)
def _pool() -> torch.Tensor:
    """U(-1, 1) float32 values from a seeded generator of their own (independent of the models' init)."""
    return torch.rand(_POOL_SIZE, generator=torch.Generator().manual_seed(20240611)) * 2 - 1


def fill(shape: tuple[int, ...], dtype: torch.dtype, index: int) -> torch.Tensor:
    """Deterministic, cheap values for the ``index``-th tensor of a checkpoint: a slice of the pool at an
    offset of its own (so no two tensors are equal); integer tensors (num_batches_tracked) hold index + 1."""
    if not dtype.is_floating_point:
        return torch.full(shape, index + 1, dtype=dtype)
    n, start = math.prod(shape), (index * 7919) % _POOL_SIZE
    reps = -(-(start + n) // _POOL_SIZE)
    pool = _pool().repeat(reps) if reps > 1 else _pool()
    return pool[start:start + n].clone().reshape(shape).to(dtype)  # clone: its own storage, not the pool's


def layout_entries(recipe: Recipe, model: torch.nn.Module) -> tuple[str, list[tuple[str, tuple, torch.dtype]]]:
    """(where the keys come from, the published [(key, shape, dtype)] in file order) for ``recipe``."""
    manifest = exact_manifest(recipe)
    if manifest is not None:
        entries = []
        for key, shape, dtype, *seed_key in manifest["entries"]:
            if seed_key and our_name(key, recipe.layout) is not None:
                # 0.x / sithu manifests give the 1.x key as seed key: our renaming must agree with it
                assert our_name(key, recipe.layout) == seed_key[0], f"{key}: 1.x key {seed_key[0]}"
            entries.append((key, tuple(shape), getattr(torch, dtype)))
        return f"manifest {manifest['name']}.{manifest['layout']}", entries
    ours = [(key, tuple(v.shape), v.dtype) for key, v in model.state_dict().items()]
    if recipe.family == "rle":  # published RLE files hold the flow after the backbone, before head.fc
        first_head = next(i for i, (key, _, _) in enumerate(ours) if key.startswith("head."))
        ours[first_head:first_head] = [(key, shape, torch.float32) for key, shape in FLOW]
    return "architecture", [(published_name(key, recipe.layout), shape, dtype) for key, shape, dtype in ours]


def published_meta(recipe: Recipe) -> dict:
    """A ``meta`` dict like the published files' (1.x: with numpy arrays in ``dataset_meta``)."""
    if recipe.layout == "mmpose-1.x":
        return {"epoch": 210, "mmengine_version": "0.7.4", "dataset_meta": {
            "dataset_name": recipe.dataset, "num_keypoints": recipe.num_keypoints,
            "sigmas": np.linspace(0.025, 0.107, recipe.num_keypoints, dtype=np.float32),
            "flip_indices": list(range(recipe.num_keypoints))}}
    return {"epoch": 210, "mmcv_version": "1.3.8", "time": "Fri Jun 10 12:00:00 2022"}


# -------------------------------------------------------------------------------------------- the tests
@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread while this module runs: filling, saving and loading ~2.8e9 values is memory
    bound, and a second OpenMP thread only spins on the 2-core CI machine (measured 110 s -> 85 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("recipe", ZOO, ids=[r.name for r in ZOO])
def test_checkpoint_in_published_layout_loads_strictly(recipe, tmp_path):
    model = build_model(recipe.arch, recipe.num_keypoints, recipe.input_size)
    source, entries = layout_entries(recipe, model)
    state_dict = OrderedDict((key, fill(shape, dtype, i)) for i, (key, shape, dtype) in enumerate(entries))
    expected = {our_name(key, recipe.layout): value for key, value in state_dict.items()}
    expected.pop(None, None)  # training-only keys: written, never loaded
    before = model.state_dict()
    same = [key for key, value in expected.items() if key in before and torch.equal(before[key], value)]
    assert not same, f"{recipe.name}: the model already holds the values to load for {same[:3]}"

    path = tmp_path / (recipe.filename or f"{recipe.name}.pth")
    meta = published_meta(recipe)
    torch.save(state_dict if recipe.layout == "state_dict" else {"meta": meta, "state_dict": state_dict}, path)
    del state_dict
    try:
        got_meta = load_weights(model, path, target=recipe.name)
    finally:
        path.unlink()

    after = model.state_dict()
    assert set(expected) == set(after), (
        f"{recipe.name} ({source}): model keys not in the checkpoint {sorted(set(after) - set(expected))[:3]}, "
        f"checkpoint keys not in the model {sorted(set(expected) - set(after))[:3]}")
    wrong = [key for key, value in after.items()
             if value.dtype != expected[key].dtype or not torch.equal(value, expected[key])]
    assert not wrong, f"{recipe.name} ({source}): {len(wrong)} tensors differ from the checkpoint: {wrong[:3]}"
    if recipe.layout == "state_dict":
        assert got_meta == {}
    else:
        assert got_meta["epoch"] == 210
    if recipe.layout == "mmpose-1.x":
        np.testing.assert_array_equal(got_meta["dataset_meta"]["sigmas"], meta["dataset_meta"]["sigmas"])


@needs_shared
@pytest.mark.parametrize("recipe", BACKBONE_CASES, ids=[r.name for r in BACKBONE_CASES])
def test_backbone_follows_the_published_manifests(recipe):
    """An entry built from the architecture has its backbone's published layout: the same ``backbone.*``
    keys, in order, with shapes, as every manifest of that backbone (shapes only, on the meta device)."""
    with torch.device("meta"):
        model = build_model(recipe.arch, recipe.num_keypoints, recipe.input_size)
    ours = [(key, tuple(v.shape)) for key, v in model.state_dict().items() if key.startswith("backbone.")]
    for manifest in backbone_manifests(recipe.backbone):
        published = [(key, tuple(shape)) for key, shape, *_ in manifest["entries"] if key.startswith("backbone.")]
        first = next((i for i, (a, b) in enumerate(zip(ours, published)) if a != b), min(len(ours), len(published)))
        assert ours == published, (
            f"{recipe.name} ({recipe.arch}, {recipe.backbone}) vs {manifest['name']}.{manifest['layout']}: "
            f"{len(ours)} vs {len(published)} backbone keys, first difference at #{first}: "
            f"{ours[first:first + 1]} vs {published[first:first + 1]}")


@needs_shared
def test_every_parity_network_is_a_zoo_entry():
    """Each parity fixture's network is some zoo entry's exact manifest (so that a renamed entry or config
    cannot quietly move it to the from-architecture path); body8_rtmpose-m is the body7-trained RTMPose-m,
    which the zoo leaves out (notes.md)."""
    used = {exact_manifest(r)["name"] for r in ZOO if exact_manifest(r) is not None}
    assert {m["name"] for m in manifests().values()} - used == {"body8_rtmpose-m"}


@needs_shared
def test_rle_flow_keys_are_the_published_ones():
    """The flow keys the from-architecture RLE checkpoints carry are those of every published RLE layout."""
    rle = [m for m in manifests().values() if any(".flow_model." in e[0] for e in m["entries"])]
    assert {m["name"] for m in rle} == {"coco_res50_rle", "mpii_res50_rle", "coco_mobilenetv2_rle"}
    for m in rle:
        layout = {"1x": "mmpose-1.x", "0x": "mmpose-0.x"}[m["layout"]]
        flow = [(key, tuple(shape)) for key, shape, *_ in m["entries"] if ".flow_model." in key]
        assert flow == [(published_name(key, layout), shape) for key, shape in FLOW], m["name"]


def test_layout_follows_the_url():
    """MMPose files under /mmpose/v1/ are 1.x checkpoints, the legacy paths 0.x (notes.md "Generation
    guess", which held for all 73 MMPose rows); sithu31296's are bare state dicts. zoo_facts' guess, where
    present, agrees."""
    wrong = []
    for r in ZOO:
        if r.source == "mmpose":
            want = "mmpose-1.x" if "/mmpose/v1/" in (r.url or "") else "mmpose-0.x"
        else:
            want = "state_dict"
        guess = facts().get(r.name, {}).get("mmpose_generation", {}).get("guess")
        if r.layout != want or (guess in ("0.x", "1.x") and f"mmpose-{guess}" != r.layout):
            wrong.append(f"{r.name}: layout {r.layout}, URL says {want}, zoo_facts {guess}")
    assert not wrong, wrong

