"""Pose networks and checkpoint loading: state-dict layouts, raw-output parity with MMPose 1.3.2 /
sithu31296, and the errors a user sees for a wrong or broken checkpoint."""
from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import PARITY, SHARED, load_fixture, needs_shared
from poseapp.errors import CheckpointError, UnknownNameError
from poseapp.models import adapt_state_dict, available_archs, build_model, load_weights, read_checkpoint, register_arch
from poseapp.models.checkpoint import check_state_dict
from poseapp.models.hrnet import HRNET_CFGS

# fixture -> (architecture, K, checkpoint layout of its reference)
CASES = {
    "coco_res50_hm": ("resnet50", 17, "1x"),
    "coco_hrnet-w32_hm": ("hrnet-w32", 17, "1x"),
    "deepfashion-full_hrnet-w48_udp": ("hrnet-w48", 8, "1x"),
    "locust_res50_hm": ("resnet50", 35, "1x"),
    "deepfashion2-lsdress_res50_hm": ("resnet50", 294, "1x"),
    "sithu_posehrnet-w32": ("hrnet-w32", 17, "sithu"),
}
MMPOSE_CASES = [name for name, (_, _, layout) in CASES.items() if layout == "1x"]


def mmpose_input(crop: np.ndarray) -> torch.Tensor:
    """(h, w, 3) BGR uint8 -> (1, 3, h, w) as MMPose's PoseDataPreprocessor makes it."""
    mean = torch.tensor([123.675, 116.28, 103.53], dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor([58.395, 57.12, 57.375], dtype=torch.float32).view(3, 1, 1)
    x = torch.from_numpy(crop).permute(2, 0, 1).float()[[2, 1, 0]]
    return ((x - mean) / std)[None]


def sithu_input(crop: np.ndarray) -> torch.Tensor:
    """(h, w, 3) RGB uint8 -> (1, 3, h, w): ToTensor (/255) then Normalize (ImageNet mean/std)."""
    mean = torch.tensor([0.485, 0.456, 0.406], dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], dtype=torch.float32).view(3, 1, 1)
    x = torch.from_numpy(crop).permute(2, 0, 1).float().div(255)
    return ((x - mean) / std)[None]


def assert_maps_close(ours: np.ndarray, ref: np.ndarray) -> None:
    assert ours.shape == ref.shape and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4 * float(np.abs(ref).max()))


@pytest.fixture(scope="module")
def checkpoints(make_checkpoint) -> dict[tuple[str, str, bool], Path]:
    """Every checkpoint this module needs, (name, layout, numpy_meta) -> path, regenerated two at a time
    (each regeneration is a ~3 s subprocess, mostly importing torch)."""
    wanted = [(name, layout, False) for name, (_, _, layout) in CASES.items()]
    wanted += [(name, "0x", False) for name in MMPOSE_CASES] + [("coco_res50_hm", "1x", True)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        paths = list(pool.map(lambda key: make_checkpoint(*key), wanted))
    return dict(zip(wanted, paths))


@pytest.fixture(scope="module")
def loaded(checkpoints):
    """``loaded(fixture_name) -> model`` with the fixture's reference checkpoint, built once per module."""
    cache: dict[str, torch.nn.Module] = {}

    def get(name: str) -> torch.nn.Module:
        if name not in cache:
            arch, k, layout = CASES[name]
            model = build_model(arch, k, fixture_input_size(name))
            load_weights(model, checkpoints[name, layout, False])
            cache[name] = model
        return cache[name]

    return get


def meta_model(arch: str, k: int, input_size: tuple[int, int] = (192, 256)) -> torch.nn.Module:
    """A model without storage (shapes and keys only): for tests that never run or fill it."""
    with torch.device("meta"):
        return build_model(arch, k, input_size)


def fixture_input_size(name: str) -> tuple[int, int]:
    """The (w, h) model input of parity fixture ``name``."""
    w, h = (int(v) for v in load_fixture(name)["input_size"])
    return w, h


# ------------------------------------------------------------------------------------ registry, shapes
def test_available_archs():
    assert {"resnet50", "resnet101", "resnet152", "hrnet-w32", "hrnet-w48"} <= set(available_archs())


def test_unknown_arch_suggests_close_names():
    with pytest.raises(UnknownNameError, match="resnet50"):
        build_model("resnet05", 17)


def test_duplicate_registration_raises():
    with pytest.raises(ValueError, match="already registered"):
        register_arch("resnet50")(lambda k, size: torch.nn.Identity())
    assert "resnet50" in available_archs()


@pytest.mark.parametrize("arch", ["resnet50", "hrnet-w32"])
def test_output_is_stride_4_heatmaps(arch):
    model = build_model(arch, 5)
    assert not model.training
    with torch.inference_mode():
        out = model(torch.randn(2, 3, 64, 32))
    assert out.shape == (2, 5, 16, 8) and out.dtype == torch.float32


@needs_shared
def test_hrnet_configs_match_the_zoo():
    zoo = json.loads((SHARED / "zoo" / "zoo_facts.json").read_text())
    extras = [e["backbone"]["extra"] for e in zoo if (e.get("backbone") or {}).get("type") == "HRNet"]
    assert extras
    for extra in extras:
        cfg = HRNET_CFGS[f"w{extra['stage2']['num_channels'][0]}"]
        for stage, want in zip(cfg, (extra[f"stage{i}"] for i in range(1, 5))):
            assert (stage.num_modules, stage.block.upper(), list(stage.num_blocks), list(stage.num_channels)) == (
                want["num_modules"], want["block"], want["num_blocks"], want["num_channels"])
            assert len(stage.num_channels) == want["num_branches"]
        assert not extra["stage4"].get("multiscale_output", False)


@needs_shared
@pytest.mark.parametrize("name", list(CASES))
def test_state_dict_keys_match_the_manifest(name):
    arch, k, layout = CASES[name]
    manifest = PARITY / "manifests" / (f"{name}.json" if layout == "sithu" else f"{name}.1x.json")
    entries = json.loads(manifest.read_text())["entries"]
    want = adapt_state_dict({key: torch.empty(shape, device="meta") for key, shape, *_ in entries})
    ours = meta_model(arch, k, fixture_input_size(name)).state_dict()
    assert list(ours) == list(want)  # same keys, same order
    assert all(ours[key].shape == want[key].shape for key in want)


@pytest.mark.parametrize("arch, blocks", [("resnet101", (3, 4, 23, 3)), ("resnet152", (3, 8, 36, 3))])
def test_deeper_resnets_have_mmpose_stage_depths(arch, blocks):
    sd = meta_model(arch, 17).state_dict()
    for stage, n in enumerate(blocks, start=1):
        assert f"backbone.layer{stage}.{n - 1}.conv3.weight" in sd
        assert f"backbone.layer{stage}.{n}.conv1.weight" not in sd
    assert sd["head.deconv_layers.0.weight"].shape == (2048, 256, 4, 4)


# ----------------------------------------------------------------------------------------------- parity
def reference_outputs(fx: dict, suffix: str = "") -> list[np.ndarray]:
    """The fixture's raw head outputs for the first instance (``suffix="_flipinput"``: mirrored input):
    heatmaps, regression, or the SimCC/SimDR x and y vectors."""
    for keys in (["raw_heatmaps"], ["raw_regression"], ["raw_simcc_x", "raw_simcc_y"], ["raw_simdr_x", "raw_simdr_y"]):
        if keys[0] + suffix in fx:
            return [fx[k + suffix] for k in keys]
    raise KeyError(f"fixture {fx['name']} has no raw outputs{suffix}")


def as_list(out) -> list[np.ndarray]:
    """A model output (tensor, or tuple of tensors for SimCC) as a list of numpy arrays."""
    return [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]


@needs_shared
@pytest.mark.parametrize("name", list(CASES))
def test_raw_outputs_match_reference(name, loaded):
    fx = load_fixture(name)
    model = loaded(name)
    sithu = CASES[name][2] == "sithu"
    x = sithu_input(fx["crop0"]) if sithu else mmpose_input(fx["crop0"])
    assert (x.shape[3], x.shape[2]) == tuple(int(v) for v in fx["input_size"])  # (w, h)
    batch = x if sithu else torch.cat([x, x.flip(-1)])
    with torch.inference_mode():
        out = as_list(model(batch))
    for ours, ref in zip(out, reference_outputs(fx), strict=True):
        assert_maps_close(ours[0], ref)
    if not sithu:
        for ours, ref in zip(out, reference_outputs(fx, "_flipinput"), strict=True):
            assert_maps_close(ours[1], ref)


@needs_shared
@pytest.mark.parametrize(
    "name, layout, numpy_meta",
    [(n, "0x", False) for n in MMPOSE_CASES] + [("coco_res50_hm", "1x", True)],
)
def test_other_layouts_load_the_same_tensors(name, layout, numpy_meta, loaded, checkpoints):
    arch, k, _ = CASES[name]
    model = build_model(arch, k, fixture_input_size(name))
    meta = load_weights(model, checkpoints[name, layout, numpy_meta])
    if numpy_meta:
        assert isinstance(meta["dataset_meta"]["sigmas"], np.ndarray)
    else:
        assert meta["mmpose_version"] == "0.29.0"
    ref = loaded(name).state_dict()
    ours = model.state_dict()
    assert list(ours) == list(ref) and all(torch.equal(ours[key], ref[key]) for key in ref)


@needs_shared
def test_sithu_checkpoint_is_the_mmpose_hrnet_w32(loaded):
    """The sithu manifest seeds its weights with the MMPose keys: after adaptation they are identical."""
    ours, ref = loaded("sithu_posehrnet-w32").state_dict(), loaded("coco_hrnet-w32_hm").state_dict()
    assert all(torch.equal(ours[key], ref[key]) for key in ref)


@needs_shared
def test_read_checkpoint_unwraps(checkpoints):
    sd, meta = read_checkpoint(checkpoints["sithu_posehrnet-w32", "sithu", False])
    assert meta == {} and "final_layer.weight" in sd
    sd, meta = read_checkpoint(checkpoints["coco_hrnet-w32_hm", "1x", False])
    assert meta["mmpose_version"] == "1.3.2" and "head.final_layer.weight" in sd


# ----------------------------------------------------------------------------------------------- errors
@needs_shared
def test_keypoint_count_mismatch_is_a_one_line_error(checkpoints):
    path = checkpoints["coco_res50_hm", "1x", False]
    with pytest.raises(CheckpointError) as err:
        load_weights(meta_model("resnet50", 20), path)
    msg = str(err.value)
    assert path.name in msg and "\n" not in msg and "--pose-arch" in msg
    assert "head.final_layer.weight: checkpoint (17, 256, 1, 1) vs model (20, 256, 1, 1)" in msg


def test_check_state_dict_lists_missing_unexpected_and_shapes():
    model = meta_model("hrnet-w32", 17)
    sd = dict(model.state_dict())
    del sd["backbone.conv1.weight"]
    del sd["backbone.bn1.num_batches_tracked"]  # optional: BatchNorm fills it in
    sd["head.extra.weight"] = torch.zeros(1, device="meta")
    sd["head.final_layer.bias"] = torch.zeros(20, device="meta")
    with pytest.raises(CheckpointError) as err:
        check_state_dict(sd, model, "w.pth")
    msg = str(err.value)
    assert "1 missing, 1 unexpected keys, 1 shape mismatches" in msg
    assert "missing: backbone.conv1.weight" in msg and "unexpected: head.extra.weight" in msg
    assert "head.final_layer.bias: checkpoint (20,) vs model (17,)" in msg


def test_missing_num_batches_tracked_is_accepted():
    """Very old checkpoints lack BatchNorm's counter; BatchNorm fills it in, so strict loading still works."""
    model = build_model("hrnet-w32", 3)
    sd = adapt_state_dict({k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")})
    check_state_dict(sd, model, "old.pth")
    model.load_state_dict(sd, strict=True)


def test_adapt_state_dict_renames_and_drops():
    t = torch.zeros(1)
    sd = {
        "module.backbone.conv1.weight": t,
        "data_preprocessor.mean": t,
        "keypoint_head.final_layer.weight": t,
        "keypoint_head.loss.flow_model.s.0.0.weight": t,
        "head.loss_module.flow_model.loc": t,
        "final_layer.bias": t,
        "head.deconv_layers.0.weight": t,
    }
    before = dict(sd)
    out = adapt_state_dict(sd, None)
    assert list(out) == [
        "backbone.conv1.weight", "head.final_layer.weight", "head.final_layer.bias", "head.deconv_layers.0.weight"
    ]
    assert sd == before


class _NotAllowed:
    pass


@pytest.mark.parametrize(
    "kind, says",
    [
        ("random", "not a PyTorch checkpoint"),
        ("text", "not a PyTorch checkpoint"),
        ("truncated", "not a PyTorch checkpoint"),
        ("tensor", "not a state dict"),
        ("pickled-object", "_NotAllowed"),
        ("missing", "does not exist"),
    ],
)
def test_bad_files_raise_checkpoint_error(kind, says, tmp_path):
    path = tmp_path / f"{kind}.pth"
    if kind == "random":
        path.write_bytes(os.urandom(4096))
    elif kind == "text":
        path.write_text("<html>404 Not Found</html>\n")
    elif kind == "truncated":
        buf = io.BytesIO()
        torch.save({"state_dict": {"a": torch.zeros(1000)}}, buf)
        path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    elif kind == "tensor":
        torch.save(torch.zeros(3), path)
    elif kind == "pickled-object":
        torch.save({"state_dict": {"a": torch.zeros(1)}, "meta": {"x": _NotAllowed()}}, path, pickle_module=pickle)
    with pytest.raises(CheckpointError) as err:
        load_weights(meta_model("resnet50", 17), path)
    msg = str(err.value)
    assert path.name in msg and says in msg and "\n" not in msg


def test_numpy_meta_loads_under_numpy_1_and_2_names(tmp_path):
    """MMPose 1.x runners store numpy arrays in meta; files pickled by NumPy 1.x name numpy.core.*."""
    buf = io.BytesIO()
    meta = {"dataset_meta": {"sigmas": np.array([0.1], np.float32), "colors": np.zeros((2, 3), np.uint8)}}
    torch.save({"state_dict": {"a": torch.ones(2)}, "meta": meta}, buf)
    for core in (b"numpy._core.multiarray", b"numpy.core.multiarray"):
        out = io.BytesIO()
        with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as zin, zipfile.ZipFile(out, "w") as zout:
            for name in zin.namelist():  # protocol-2 pickle: GLOBAL names are newline-terminated text
                data = zin.read(name)
                if name.endswith("data.pkl"):
                    data = data.replace(b"numpy._core.multiarray", core)
                zout.writestr(name, data)
        path = tmp_path / "np.pth"
        path.write_bytes(out.getvalue())
        sd, got = read_checkpoint(path)
        assert torch.equal(sd["a"], torch.ones(2))
        np.testing.assert_array_equal(got["dataset_meta"]["colors"], meta["dataset_meta"]["colors"])
        assert got["dataset_meta"]["sigmas"].dtype == np.float32
