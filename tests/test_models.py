"""Pose networks and checkpoint loading: state-dict layouts, raw-output parity with MMPose 1.3.2 /
sithu31296, and the errors a user sees for a wrong or broken checkpoint."""
from __future__ import annotations

import io
import json
import os
import pickle
import re
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import PARITY, SHARED, load_fixture, needs_shared, raw_reference
from poseapp.errors import CheckpointError, UnknownNameError
from poseapp.runtimes.base import as_outputs
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
    "coco_res50_deeppose": ("resnet50-deeppose", 17, "1x"),
    "wflw_res50_reg": ("resnet50-deeppose", 98, "1x"),
    "coco_res50_rle": ("resnet50-rle", 17, "1x"),
    "mpii_res50_rle": ("resnet50-rle", 16, "1x"),
    "coco_mobilenetv2_rle": ("mobilenetv2-rle", 17, "1x"),
    "coco_simcc_res50": ("resnet50-simcc", 17, "1x"),
    "coco_rtmpose-m": ("rtmpose-m", 17, "1x"),
    "body8_rtmpose-m": ("rtmpose-m", 17, "1x"),
    "ap10k_cspnext-m_udp": ("cspnext-m", 17, "1x"),
    "sithu_simdr-w32": ("simdr-w32", 17, "sithu"),
}
MMPOSE_CASES = [name for name, (_, _, layout) in CASES.items() if layout == "1x"]
# fixtures whose weights also exist in the MMPose 0.x layout (CSPNeXt and SimCC heads are 1.x only)
OLD_LAYOUT_CASES = [name for name in MMPOSE_CASES if (PARITY / "manifests" / f"{name}.0x.json").is_file()]


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
    wanted += [(name, "0x", False) for name in OLD_LAYOUT_CASES] + [("coco_res50_hm", "1x", True)]
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
        out = [t.numpy() for t in as_outputs(model(batch))]
    for ours, ref in zip(out, raw_reference(fx), strict=True):
        assert_maps_close(ours[0], ref)
    if not sithu:
        for ours, ref in zip(out, raw_reference(fx, "_flipinput"), strict=True):
            assert_maps_close(ours[1], ref)


@needs_shared
@pytest.mark.parametrize(
    "name, layout, numpy_meta",
    [(n, "0x", False) for n in OLD_LAYOUT_CASES] + [("coco_res50_hm", "1x", True)],
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
MISMATCHES = [  # (fixture whose checkpoint is given, zoo recipe chosen, what the message says it holds)
    ("coco_res50_rle", "res50-deeppose_coco-256x192", "an RLE regression head for 17 keypoints"),
    ("coco_res50_hm", "res50_animalpose-256x256", "a heatmap head for 17 keypoints"),
    ("coco_rtmpose-m", "simcc-res50_coco-256x192", "an RTMCC (RTMPose SimCC) head for 17 keypoints"),
    ("coco_res50_deeppose", "res50-deeppose_mpii-256x256", "a regression head with 34 outputs"),
]


@needs_shared
@pytest.mark.parametrize("fixture, recipe, holds", MISMATCHES, ids=[m[1] for m in MISMATCHES])
def test_checkpoint_recipe_mismatch_names_both(fixture, recipe, holds, checkpoints):
    """One line naming the file and what it holds, and the recipe and what it needs: through the API and
    the CLI (exit 2, no traceback)."""
    from click.testing import CliRunner

    from poseapp.create import create_model
    from poseapp.cli import main
    from poseapp.zoo import get_recipe

    path = checkpoints[fixture, "1x", False]
    r = get_recipe(recipe)
    with pytest.raises(CheckpointError) as err:
        create_model(path, arch=recipe, device="cpu")
    msg = str(err.value)
    assert "\n" not in msg
    assert f"checkpoint {path} ({holds}" in msg
    assert f"does not fit {recipe} ({r.arch}, {r.num_keypoints} keypoints)" in msg
    result = CliRunner().invoke(main, ["--source", str(PARITY / ".." / "data" / "coco" / "000000000785.jpg"),
                                       "--pose-model", str(path), "--pose-arch", recipe, "--no-save",
                                       "--det-model", "none", "--device", "cpu"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and recipe in lines[0] and holds in lines[0]


@needs_shared
def test_keypoint_count_mismatch_is_a_one_line_error(checkpoints):
    path = checkpoints["coco_res50_hm", "1x", False]
    with pytest.raises(CheckpointError) as err:
        load_weights(meta_model("resnet50", 20), path)
    msg = str(err.value)
    assert path.name in msg and "\n" not in msg and msg.endswith("pass arch with the zoo name it follows")
    assert err.value.render({"arch": "--pose-arch"}).endswith("pass --pose-arch with the zoo name it follows")
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


# ------------------------------------------------------------------------------------ regression models
REGRESSION_ARCHS = {  # arch -> (backbone channels, values per keypoint, deepest ResNet block key or None)
    "resnet50-deeppose": (2048, 2, "backbone.layer3.5.conv3.weight"),
    "resnet101-deeppose": (2048, 2, "backbone.layer3.22.conv3.weight"),
    "resnet152-deeppose": (2048, 2, "backbone.layer3.35.conv3.weight"),
    "resnet50-rle": (2048, 4, "backbone.layer3.5.conv3.weight"),
    "resnet101-rle": (2048, 4, "backbone.layer3.22.conv3.weight"),
    "resnet152-rle": (2048, 4, "backbone.layer3.35.conv3.weight"),
    "mobilenetv2-rle": (1280, 4, None),
}


@pytest.mark.parametrize("arch", list(REGRESSION_ARCHS))
def test_regression_archs_shapes(arch):
    """Shapes only, on the meta device: (N, K, 2) DeepPose / (N, K, 4) RLE for any input size."""
    channels, values, deepest = REGRESSION_ARCHS[arch]
    model = meta_model(arch, 7, (288, 384))
    sd = model.state_dict()
    assert sd["head.fc.weight"].shape == (7 * values, channels) and list(sd)[-2:] == ["head.fc.weight", "head.fc.bias"]
    assert not any("loss" in key for key in sd)  # the RLE flow model is training-only
    if deepest:
        assert deepest in sd
    with torch.inference_mode():
        out = model(torch.empty(2, 3, 384, 288, device="meta"))
    assert out.shape == (2, 7, values)


def test_rle_head_returns_sigma_logits_after_global_average_pooling():
    from poseapp.models.heads import RegressionHead, RLEHead

    head = RLEHead(3, 2)
    with torch.no_grad():
        head.fc.weight.zero_()
        head.fc.weight[:, 0] = 1.0  # every output = mean of channel 0 + bias
        head.fc.bias.copy_(torch.tensor([0.1, 0.2, -3.0, -4.0, 0.3, 0.4, -5.0, 2.0]))
    feats = torch.zeros(1, 3, 4, 6)
    feats[0, 0, :2] = 2.0  # channel-0 mean = 2 * 12 / 24 = 1.0
    out = head((torch.randn(1, 5, 8, 12), feats))  # uses the last feature map only
    want = torch.tensor([[[1.1, 1.2, -2.0, -3.0], [1.3, 1.4, -4.0, 3.0]]])
    torch.testing.assert_close(out, want)  # no sigmoid: negative sigma logits stay negative
    assert RegressionHead(3, 2)((feats,)).shape == (1, 2, 2)


def test_mobilenetv2_stage_widths_strides_and_relu6():
    from poseapp.models.mobilenetv2 import MobileNetV2, make_divisible

    assert [make_divisible(v, 8) for v in (32, 16 * 0.5, 24 * 0.75, 4, 11)] == [32, 8, 24, 8, 16]
    backbone = MobileNetV2(out_indices=tuple(range(8))).eval()
    with torch.inference_mode():
        outs = backbone(torch.randn(1, 3, 64, 64))
    widths = [o.shape[1] for o in outs]
    strides = [64 // o.shape[2] for o in outs]
    assert widths == [16, 24, 32, 64, 96, 160, 320, 1280] and strides == [2, 4, 8, 16, 16, 32, 32, 32]
    assert 0.0 <= float(outs[-1].min()) and float(outs[-1].max()) <= 6.0  # ReLU6 after the last conv
    assert len(backbone.layer1[0].conv) == 2 and len(backbone.layer2[0].conv) == 3  # expand ratio 1: no 1x1 expand


# --------------------------------------------------------------------------------- SimCC / RTMPose / SimDR
def zoo_facts(prefix: str) -> list[dict]:
    """The ../shared/zoo/zoo_facts.json entries whose name starts with ``prefix``."""
    zoo = json.loads((SHARED / "zoo" / "zoo_facts.json").read_text())
    return [entry for entry in zoo if entry["name"].startswith(prefix)]


@needs_shared
@pytest.mark.parametrize("size", ["t", "s", "m", "l"])
def test_rtmpose_shapes_follow_the_zoo_configs(size):
    """Meta device: backbone widths/depths and head sizes are the ones the RTMPose-size config implies."""
    (entry,) = zoo_facts(f"rtmpose-{size}_coco")
    backbone, head = entry["backbone"], entry["head"]
    deepen, widen = backbone["deepen_factor"], backbone["widen_factor"]
    model = meta_model(f"rtmpose-{size}", 17, tuple(entry["input_size"]))
    sd = model.state_dict()
    assert sd["backbone.stem.0.conv.weight"].shape == (int(64 * widen // 2), 3, 3, 3)
    for stage, blocks in enumerate((3, 6, 6, 3), start=1):
        n = max(round(blocks * deepen), 1)
        csp = f"backbone.stage{stage}.{2 if stage == 4 else 1}"
        assert f"{csp}.blocks.{n - 1}.conv2.depthwise_conv.conv.weight" in sd
        assert f"{csp}.blocks.{n}.conv1.conv.weight" not in sd
    k = head["final_layer_kernel_size"]
    assert sd["head.final_layer.weight"].shape == (17, head["in_channels"], k, k)
    fw, fh = head["in_featuremap_size"]
    hidden = head["gau_cfg"]["hidden_dims"]
    assert sd["head.mlp.1.weight"].shape == (hidden, fw * fh)
    assert sd["head.gau.uv.weight"].shape == (2 * 2 * hidden + head["gau_cfg"]["s"], hidden)
    (w, h), ratio = head["input_size"], head["simcc_split_ratio"]
    sx, sy = int(w * ratio), int(h * ratio)
    assert sd["head.cls_x.weight"].shape == (sx, hidden) and sd["head.cls_y.weight"].shape == (sy, hidden)
    bns = [m for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(m.eps == 1e-5 for m in bns)  # the configs' SyncBN, not mmdet's default eps 1e-3


@pytest.mark.parametrize("arch, feature, flat", [
    ("rtmpose-m", "head.mlp.1.weight", 9 * 12),  # stride-32 backbone map
    ("resnet50-simcc", "head.mlp_head_x.weight", 72 * 96),  # stride 32, then three x2 deconvs
    ("simdr-w32", "head.mlp_head_x.weight", 72 * 96),  # HRNet's stride-4 map
])
def test_simcc_sizes_follow_the_input_size(arch, feature, flat):
    """A 288x384 (w, h) model: 576 / 768 bins, and the flattened maps its size implies."""
    model = meta_model(arch, 5, (288, 384))
    assert model.state_dict()[feature].shape[-1] == flat
    with torch.inference_mode():
        x, y = model(torch.empty(2, 3, 384, 288, device="meta"))
    assert x.shape == (2, 5, 576) and y.shape == (2, 5, 768)


@needs_shared
@pytest.mark.parametrize("name", ["simdr-w32", "simdr-w48", "sa-simdr-w48"])
def test_sithu_simdr_zoo_entries_fit_simdr(name):
    """sithu's SA-SimDR checkpoint is a SimDR-W48 network (same keys and shapes; only its training differs)."""
    (entry,) = zoo_facts(f"{name}_coco")
    head = entry["head"]
    arch = f"simdr-w{entry['backbone']['width']}"
    sd = meta_model(arch, head["out_channels"], tuple(entry["input_size"])).state_dict()
    assert sd["head.final_layer.weight"].shape == (head["out_channels"], head["in_channels"], 1, 1)
    assert sd["head.mlp_head_x.weight"].shape == (head["x_bins"], head["flatten_dim"])
    assert sd["head.mlp_head_y.weight"].shape == (head["y_bins"], head["flatten_dim"])


def test_rtmpose_t_runs_and_channel_attention_is_hard_sigmoid():
    from poseapp.models.cspnext import ChannelAttention

    model = build_model("rtmpose-t", 3, (64, 96))
    with torch.inference_mode():
        x, y = model(torch.randn(1, 3, 96, 64))
    assert x.shape == (1, 3, 128) and y.shape == (1, 3, 192) and x.dtype == torch.float32
    attention = ChannelAttention(2)
    with torch.no_grad():
        attention.fc.weight.copy_(torch.eye(2).view(2, 2, 1, 1))
        attention.fc.bias.zero_()
    feats = torch.tensor([1.5, 4.0]).view(1, 2, 1, 1)
    # relu6(x + 3) / 6: 1.5 -> 0.75, 4.0 -> 1.0 (a logistic sigmoid would give 0.82 and 0.98)
    torch.testing.assert_close(attention(feats).flatten(), torch.tensor([1.5 * 0.75, 4.0]))


_SMALLEST = ("mobilenetv2", "rtmpose-t", "resnet50", "cspnext-m", "hrnet-w32", "simdr-w32")


@pytest.mark.parametrize("codec, warp", [("msra", "mmpose"), ("dark", "mmpose"), ("udp", "mmpose-udp"),
                                         ("hrnet", "hrnet"), ("regression", "mmpose"), ("rle", "mmpose"),
                                         ("simcc", "mmpose"), ("simdr", "hrnet")])
def test_every_codec_gives_float64_image_keypoints(codec, warp):
    """One keypoint dtype whatever the codec (issue 13): float64 keypoints and scores, flip test on, for an
    image with boxes and one without; the keypoints land in the image around the box."""
    import torch

    from poseapp.estimator import TopDownEstimator
    from poseapp.models import build_model
    from poseapp.zoo import list_recipes

    recipes = [r for r in list_recipes() if (r.codec, r.warp) == (codec, warp)]
    recipe = min(recipes, key=lambda r: next((i for i, a in enumerate(_SMALLEST) if r.arch.startswith(a)), 99))
    torch.manual_seed(0)
    estimator = TopDownEstimator(build_model(recipe.arch, recipe.num_keypoints, recipe.input_size), recipe,
                                 flip_test=True)
    image = np.random.default_rng(0).integers(0, 256, (240, 320, 3), np.uint8)
    (kpts, scores), (none_k, none_s) = estimator([image, image], [np.array([[40.0, 30, 200, 220]]), np.zeros((0, 4))])
    k = estimator.keypoint_set.num_keypoints
    assert kpts.shape == (1, k, 2) and scores.shape == (1, k) and none_k.shape == (0, k, 2) and none_s.shape == (0, k)
    assert {a.dtype for a in (kpts, scores, none_k, none_s)} == {np.dtype(np.float64)}, recipe.name
    assert np.isfinite(kpts).all() and (kpts > -200).all() and (kpts < 520).all(), recipe.name


def test_estimator_inputs_it_cannot_take_say_what_it_takes():
    import torch

    from poseapp.estimator import TopDownEstimator
    from poseapp.models import build_model
    from poseapp.zoo import get_recipe

    recipe = get_recipe("res50_coco-256x192")
    torch.manual_seed(0)
    estimator = TopDownEstimator(build_model(recipe.arch, recipe.num_keypoints, recipe.input_size), recipe)
    image, box = np.zeros((60, 80, 3), np.uint8), [[10, 20, 50, 55]]
    for images, boxes, words in [(image, [box], "a list of (H, W, 3)"), ([image[..., 0]], [box], "uint8 (60, 80)"),
                                 ([image, image], [box], "2 image(s) but boxes for 1"),
                                 ([image], [[[10, 20, 50, 55, 0.9]]], "pass (N, 4) xyxy boxes")]:
        with pytest.raises(ValueError, match=re.escape(words)):
            estimator(images, boxes)
    (kpts, _), = estimator([image], [box])  # the same image and box, given right
    assert kpts.shape == (1, 17, 2)
