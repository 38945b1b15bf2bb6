"""Backends, precisions, exports and a user's own ONNX model (poseapp.runtimes, poseapp.recipes, export).

The real trained model here is ../shared/weights' Ultralight-Nano-SimplePose ONNX (static batch 1, opset 8,
RGB /255 ImageNet normalisation, 17x64x48 heatmaps: the recipe res50_coco-256x192); the exports use the
parity checkpoints (random weights in the published layouts) of small networks.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import DATA, DETECTOR, SHARED, needs_shared
from poseapp.cli import main
from poseapp.errors import CheckpointError, PoseAppError

ULTRALIGHT = SHARED / "weights" / "ultralight-nano-simplepose-coco-256x192.onnx"
ULTRALIGHT_ARCH = "res50_coco-256x192"
RLE_ARCH = "mobilenetv2-rle_coco-256x192"
needs_ultralight = pytest.mark.skipif(not ULTRALIGHT.is_file(), reason=f"{ULTRALIGHT} is not here (../shared)")


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """An empty weights cache of the test's own (exports and backends.json land there)."""
    monkeypatch.setenv("POSEAPP_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def coco_people():
    """(image, (N, 4) xyxy ground-truth boxes) of the coco/ images with annotated people."""
    d = json.loads((DATA / "coco" / "test_coco.json").read_text())
    for im in d["images"]:
        boxes = [a["bbox"] for a in d["annotations"] if a["image_id"] == im["id"] and a["num_keypoints"] > 0]
        if boxes:
            yield cv2.imread(str(DATA / "coco" / im["file_name"])), np.array(
                [[x, y, x + w, y + h] for x, y, w, h in boxes], np.float32)


# ---------------------------------------------------------------------------------------------- auto


def test_auto_picks_the_fastest_and_onnxruntime_wins_a_tie_within_5_percent():
    from poseapp.runtimes.auto import pick

    assert pick({"torch": 7.0, "onnxruntime": 9.0, "openvino": 11.0}) == "openvino"
    assert pick({"torch": 10.0, "onnxruntime": 9.6, "openvino": 10.0}) == "onnxruntime"  # 4% behind: a tie
    assert pick({"torch": 10.0, "onnxruntime": 9.4}) == "torch"  # 6% behind
    assert pick({"torch": 3.0, "openvino": 2.0}) == "torch"


def test_auto_measures_once_and_remembers_per_key(tmp_path, monkeypatch):
    """A unit test of the cache: stand-in runtimes count how often they are built and measured (the
    measurement itself is a stand-in too: each runtime says its speed)."""
    from poseapp.runtimes import auto
    from poseapp.runtimes.auto import choose

    built, calls = [], []

    class Fake:
        device, precision = "cpu", "fp32"

        def __init__(self, name, speed):
            self.backend, self.speed = name, speed
            built.append(name)

    def measure(runtime, input_size):
        calls.append(runtime.backend)
        return runtime.speed

    monkeypatch.setattr(auto, "measure", measure)
    factories = {"torch": lambda: Fake("torch", 50.0), "onnxruntime": lambda: Fake("onnxruntime", 1000.0)}
    cache = tmp_path / "backends.json"
    first = choose(factories, "key-a", (8, 8), cache=cache)
    assert first.backend == "onnxruntime" and sorted(set(built)) == ["onnxruntime", "torch"]
    saved = json.loads(cache.read_text())["key-a"]
    assert saved["choice"] == "onnxruntime" and saved["crops_per_s"]["onnxruntime"] > saved["crops_per_s"]["torch"]
    built.clear(), calls.clear()
    again = choose(factories, "key-a", (8, 8), cache=cache)
    assert again.backend == "onnxruntime" and built == ["onnxruntime"] and calls == []  # nothing measured
    choose(factories, "key-b", (8, 8), cache=cache)  # another CPU, package or model: measured afresh
    assert sorted(set(built)) == ["onnxruntime", "torch"] and set(json.loads(cache.read_text())) == {"key-a", "key-b"}
    cache.write_text("{ not json")  # a damaged cache is measured again, not an error
    assert choose(factories, "key-a", (8, 8), cache=cache).backend == "onnxruntime"

    def broken():
        raise RuntimeError("its package was removed")

    calls.clear()  # the remembered choice no longer builds: measured again among those that do
    assert choose({**factories, "onnxruntime": broken}, "key-a", (8, 8), cache=cache).backend == "torch"
    assert calls == ["torch"] and json.loads(cache.read_text())["key-a"]["choice"] == "torch"


def test_fixed_batch_graphs_run_in_padded_chunks():
    from poseapp.runtimes.graph import run_fixed_batch

    seen = []

    def run(x):
        seen.append(len(x))
        return [x * 2, x[:, :1]]

    x = np.arange(7 * 2, dtype=np.float32).reshape(7, 2)
    out = run_fixed_batch(run, x, 3)
    assert seen == [3, 3, 3]  # the last chunk of one padded to three
    np.testing.assert_array_equal(out[0], x * 2)
    np.testing.assert_array_equal(out[1], x[:, :1])
    seen.clear()
    assert run_fixed_batch(run, x, None)[0].shape == (7, 2) and seen == [7]


def test_probe_key_carries_cpu_threads_precision_versions_and_network():
    from poseapp.runtimes.auto import probe_key
    from poseapp.runtimes.base import cpu_name

    key = probe_key("hrnet-w32:17:192x256", threads=2, precision="fp32", device="cpu")
    assert cpu_name() in key and "threads=2" in key and "|fp32|" in key and "hrnet-w32:17:192x256" in key
    assert "torch=" in key and "onnxruntime=" in key and "openvino=" in key
    assert key != probe_key("hrnet-w32:17:192x256", threads=1, precision="fp32", device="cpu")
    assert key != probe_key("hrnet-w32:17:192x256", threads=2, precision="bf16", device="cpu")


# ---------------------------------------------------------------------------------------------- precision


def test_precision_checks_name_the_argument(monkeypatch):
    from poseapp.runtimes import base

    with pytest.raises(PoseAppError, match="fp16 needs a CUDA device") as e:
        base.check_precision("fp16", "cpu")
    assert "--precision fp16" in e.value.render({"precision": "--precision"})
    with pytest.raises(PoseAppError, match="int8 is not offered yet"):
        base.check_precision("int8", "cpu")
    with pytest.raises(PoseAppError, match="pass one of fp32, bf16, fp16"):
        base.check_precision("fp8", "cpu")
    monkeypatch.setattr(base, "cpu_flags", lambda: frozenset({"avx2", "avx512f"}))
    with pytest.raises(PoseAppError, match="neither AMX-BF16 nor AVX512-BF16"):
        base.check_precision("bf16", "cpu")
    assert base.check_precision("bf16", "cuda") == "bf16"
    monkeypatch.setattr(base, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    assert base.check_precision("BF16", "cpu") == "bf16"


@needs_ultralight
def test_openvino_fp32_is_fp32():
    """OpenVINO would run bf16 by itself on an AMX/AVX512-BF16 CPU: fp32 sets the hint, the compiled model
    reports f32, and its heatmaps are ONNX Runtime's to float noise, where bf16's are not."""
    import torch

    from poseapp.runtimes.onnx_runtime import OnnxRuntime
    from poseapp.runtimes.openvino_runtime import OpenVinoRuntime
    from poseapp.runtimes.base import native_bf16
    from poseapp.zoo import get_recipe

    recipe = get_recipe(ULTRALIGHT_ARCH)
    fp32 = OpenVinoRuntime(ULTRALIGHT, recipe, precision="fp32", threads=2)
    assert fp32.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "f32"
    assert fp32.precision == "fp32"
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 3, 256, 192), dtype=np.float32))
    want = OnnxRuntime(ULTRALIGHT, recipe, threads=2)(x)[0]
    scale = float(want.abs().max())
    assert float((fp32(x)[0] - want).abs().max()) < 1e-5 * scale
    if native_bf16():
        bf16 = OpenVinoRuntime(ULTRALIGHT, recipe, precision="bf16", threads=2)
        assert bf16.precision == "bf16"
        assert float((bf16(x)[0] - want).abs().max()) > 1e-4 * scale  # bf16 keeps 8 bits of mantissa


# ---------------------------------------------------------------------------------------------- a user's ONNX


@needs_shared
@needs_ultralight
@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_static_batch_1_graph_is_looped_and_matches_one_by_one(backend, home):
    from poseapp import create_model

    estimator = create_model(ULTRALIGHT, arch=ULTRALIGHT_ARCH, device="cpu", backend=backend, batch_size=8)
    assert estimator.runtime.batch == 1 and estimator.backend == backend
    image, boxes = max(coco_people(), key=lambda people: len(people[1]))
    together = estimator([image], [boxes])[0]
    alone = [estimator([image], [b[None]])[0] for b in boxes]
    assert len(boxes) > 1
    np.testing.assert_allclose(together[0], np.concatenate([k for k, _ in alone]), atol=1e-4)
    np.testing.assert_allclose(together[1], np.concatenate([s for _, s in alone]), atol=1e-5)


@needs_ultralight
def test_onnx_shapes_are_checked_against_the_recipe(tmp_path):
    from poseapp import create_model

    with pytest.raises(CheckpointError) as e:  # 256x256 input recipe
        create_model(ULTRALIGHT, arch="hrnet-w32_ap10k-256x256", device="cpu", backend="onnxruntime")
    assert f"{ULTRALIGHT}: its input is (1, 3, 256, 192) but recipe hrnet-w32_ap10k-256x256 feeds " \
           "(batch, 3, 256, 256) crops" in str(e.value) and "\n" not in str(e.value)
    recipe = tmp_path / "half.json"
    recipe.write_text(json.dumps({"keypoint_set": "coco", "codec": "msra", "input_size": [192, 256],
                                  "heatmap_size": [24, 32]}))
    with pytest.raises(CheckpointError, match=r"output \(1, 17, 64, 48\) is not recipe half's heatmaps "
                                              r"\(\?, 17, 32, 24\)"):
        create_model(ULTRALIGHT, recipe=recipe, device="cpu", backend="openvino")
    mpii = tmp_path / "mpii.json"
    mpii.write_text(json.dumps({"keypoint_set": "mpii", "codec": "msra", "input_size": [192, 256],
                                "heatmap_size": [48, 64]}))
    with pytest.raises(CheckpointError, match=r"is not recipe mpii's heatmaps \(\?, 16, 64, 48\)"):
        create_model(ULTRALIGHT, recipe=mpii, device="cpu", backend="onnxruntime")


@needs_ultralight
def test_a_graph_without_a_recipe_asks_for_one_and_torch_cannot_run_it(tmp_path):
    from poseapp import create_model

    with pytest.raises(CheckpointError, match="carries no poseapp recipe: pass arch NAME .* or recipe recipe.json"):
        create_model(ULTRALIGHT, device="cpu")
    with pytest.raises(PoseAppError, match="backend torch cannot run ultralight.*an ONNX graph runs on onnxruntime "
                                           "or openvino"):
        create_model(ULTRALIGHT, arch=ULTRALIGHT_ARCH, device="cpu", backend="torch")
    with pytest.raises(PoseAppError, match="arch and recipe both say"):
        create_model(ULTRALIGHT, arch=ULTRALIGHT_ARCH, recipe=tmp_path / "r.json", device="cpu")


def _graph(path: Path, inputs: list[tuple[str, int]]) -> Path:
    """A tiny ONNX graph with these (name, element type) inputs, summed into one output."""
    import onnx
    from onnx import helper

    shape = [1, 3, 256, 192]
    values = [helper.make_tensor_value_info(name, kind, shape) for name, kind in inputs]
    nodes = [helper.make_node("Identity", [inputs[0][0]], ["out"])] if len(inputs) == 1 else \
        [helper.make_node("Sum", [name for name, _ in inputs], ["out"])]
    out = helper.make_tensor_value_info("out", inputs[0][1], shape)
    model = helper.make_model(helper.make_graph(nodes, "g", values, [out]), opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_graphs_that_are_not_pose_models_are_one_line(backend, tmp_path):
    from onnx import TensorProto

    from poseapp import create_model

    two = _graph(tmp_path / "two.onnx", [("a", TensorProto.FLOAT), ("b", TensorProto.FLOAT)])
    with pytest.raises(CheckpointError, match="it has 2 inputs; a pose model takes one"):
        create_model(two, arch=ULTRALIGHT_ARCH, device="cpu", backend=backend)
    uint8 = _graph(tmp_path / "u8.onnx", [("a", TensorProto.UINT8)])
    with pytest.raises(CheckpointError, match="its input is .*(uint8|u8).*poseapp feeds float32 crops"):
        create_model(uint8, arch=ULTRALIGHT_ARCH, device="cpu", backend=backend)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a protobuf at all")
    with pytest.raises(CheckpointError, match="junk.onnx: not an ONNX model"):
        create_model(junk, arch=ULTRALIGHT_ARCH, device="cpu", backend=backend)


def test_onnx_external_data_outside_its_folder_is_refused(tmp_path):
    import onnx
    from onnx import TensorProto

    from poseapp.create import resolve_model

    path = _graph(tmp_path / "ext.onnx", [("a", TensorProto.FLOAT)])
    model = onnx.load(str(path))
    weight = model.graph.initializer.add()
    weight.name, weight.data_type, weight.data_location = "w", TensorProto.FLOAT, TensorProto.EXTERNAL
    weight.dims.append(1)
    entry = weight.external_data.add()
    entry.key, entry.value = "location", "../../etc/secret.bin"
    onnx.save(model, str(path))
    with pytest.raises(CheckpointError, match="its weights point outside its folder"):
        resolve_model(path, ULTRALIGHT_ARCH)


def test_recipe_files_are_checked_field_by_field(tmp_path):
    from poseapp.recipes import read_recipe_file

    def read(data) -> str:
        path = tmp_path / "r.json"
        path.write_text(json.dumps(data))
        with pytest.raises(CheckpointError) as e:
            read_recipe_file(path)
        assert str(path) in str(e.value) and "\n" not in str(e.value)
        return str(e.value)

    ok = {"keypoint_set": "coco", "codec": "msra", "input_size": [192, 256], "heatmap_size": [48, 64]}
    recipe = read_recipe_file((tmp_path / "mine.json", (tmp_path / "mine.json").write_text(json.dumps(ok)))[0])
    assert (recipe.name, recipe.num_keypoints, recipe.warp, recipe.input_size, recipe.flip_test) == \
        ("mine", 17, "mmpose", (192, 256), True)
    assert "unknown recipe field 'imput_size' (did you mean 'input_size'?)" in read({**ok, "imput_size": [1, 2]})
    assert "the recipe needs 'codec'" in read({k: v for k, v in ok.items() if k != "codec"})
    assert "recipe field 'codec' is 'nope', not one of msra, dark" in read({**ok, "codec": "nope"})
    assert "keypoint_set 'people' is not one of" in read({**ok, "keypoint_set": "people"})
    assert "the recipe needs 'heatmap_size'" in read({k: v for k, v in ok.items() if k != "heatmap_size"})
    assert "that is the 0-1 scale, and a recipe's are on 0-255" in read(
        {**ok, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]})
    assert "'input_size' is (192, 0)" in read({**ok, "input_size": [192, 0]})
    assert "'std' is (1, 0, 1): every value must be above 0" in read({**ok, "std": [1, 0, 1]})
    assert "'mean' is (1, 2): give three numbers" in read({**ok, "mean": [1, 2]})
    assert "'flip_test' is 'yes': give true or false" in read({**ok, "flip_test": "yes"})
    assert "'num_keypoints' is 16 but keypoint set coco has 17" in read({**ok, "num_keypoints": 16})
    assert "a recipe is a JSON object" in read([1, 2])
    assert "'codec' is ['msra']: give a string" in read({**ok, "codec": ["msra"]})
    assert "'keypoint_range' is (1,): give [start, stop)" in read({**ok, "keypoint_range": [1]})
    assert "blur_kernel_size 'x': give an odd whole number" in read({**ok, "codec_params": {"blur_kernel_size": "x"}})
    assert "'num_keypoints' is '17': give a whole number" in read({**ok, "num_keypoints": "17"})


def test_every_zoo_entry_passes_the_recipe_check():
    from poseapp.recipes import check_recipe, recipe_from_dict, recipe_to_dict
    from poseapp.zoo import list_recipes

    for recipe in list_recipes():
        check_recipe(recipe, f"zoo entry {recipe.name}")
        assert recipe_from_dict(recipe_to_dict(recipe), "round trip") == recipe  # what an export writes, read back


# ---------------------------------------------------------------------------------------------- export


@needs_shared
def test_export_carries_the_recipe_and_runs_with_no_arch(make_checkpoint, tmp_path, home):
    """``python infer.py export CKPT --pose-arch NAME`` -> an .onnx and an OpenVINO .xml that resolve to the
    same recipe, run with no --pose-arch, and give the torch network's keypoints."""
    from poseapp import create_model
    from poseapp.create import resolve_model

    ckpt = make_checkpoint("coco_mobilenetv2_rle")
    runner = CliRunner()
    paths = {}
    for fmt, suffix in (("onnx", ".onnx"), ("openvino", ".xml")):
        out = tmp_path if fmt == "onnx" else tmp_path / f"{RLE_ARCH}.xml"  # a folder; a file whose suffix says the format
        result = runner.invoke(main, ["export", str(ckpt), "--pose-arch", RLE_ARCH, "--out", str(out)])
        assert result.exit_code == 0, result.output
        paths[fmt] = tmp_path / f"{RLE_ARCH}{suffix}"
        assert result.stdout.split()[0] == str(paths[fmt])
        difference = float(result.stdout.split("within ")[1].split()[0])
        assert difference < 1e-4
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == \
        sorted([f"{RLE_ARCH}.onnx", f"{RLE_ARCH}.xml", f"{RLE_ARCH}.bin"])  # no temporary file left
    torch_est = create_model(ckpt, arch=RLE_ARCH, device="cpu", backend="torch")
    image, boxes = next(coco_people())
    want = torch_est([image], [boxes])[0]
    from dataclasses import replace

    # the file's recipe says how to use the model, and nothing about where to download anything
    carried = replace(torch_est.recipe, url=None, filename=None, sha256_prefix=None, gdrive_id=None)
    for fmt, path in paths.items():
        resolved = resolve_model(path)
        assert resolved.recipe == carried and resolved.recipe.url is None and resolved.precision == "fp32"
        est = create_model(path, device="cpu")  # no arch: the file's own recipe
        assert est.recipe == carried and est.backend in ("onnxruntime", "openvino")
        got = est([image], [boxes])[0]
        np.testing.assert_allclose(got[0], want[0], atol=1e-3, rtol=1e-5)  # random weights: points 500 px out
        np.testing.assert_allclose(got[1], want[1], atol=1e-5)
    paths["openvino"].with_suffix(".bin").unlink()
    with pytest.raises(CheckpointError, match=f"{RLE_ARCH}.xml: its weights {RLE_ARCH}.bin are not beside it"):
        create_model(paths["openvino"], device="cpu")


@needs_shared
def test_export_refuses_what_it_cannot_write(make_checkpoint, tmp_path, home):
    ckpt = make_checkpoint("coco_mobilenetv2_rle")
    runner = CliRunner()
    result = runner.invoke(main, ["export", str(ckpt), "--pose-arch", RLE_ARCH, "--format", "onnx",
                                  "--out", str(tmp_path / "m.xml")])
    assert result.exit_code == 2 and "error: --out" in result.stderr and "an ONNX export is a .onnx file" in result.stderr
    (tmp_path / "file").write_text("")
    result = runner.invoke(main, ["export", str(ckpt), "--pose-arch", RLE_ARCH, "--out", str(tmp_path / "file" / "m.onnx")])
    assert result.exit_code == 2 and f"{tmp_path / 'file'} is a file, not a folder" in result.stderr
    onnx = tmp_path / "m.onnx"
    assert runner.invoke(main, ["export", str(ckpt), "--pose-arch", RLE_ARCH, "--out", str(onnx)]).exit_code == 0
    result = runner.invoke(main, ["export", str(onnx)])
    assert result.exit_code == 2 and "is an exported model already" in result.stderr


@needs_shared
def test_a_tampered_recipe_in_a_file_is_one_line(make_checkpoint, tmp_path, home):
    import onnx

    from poseapp import create_model

    ckpt = make_checkpoint("coco_mobilenetv2_rle")
    path = tmp_path / "m.onnx"
    assert CliRunner().invoke(main, ["export", str(ckpt), "--pose-arch", RLE_ARCH, "--out", str(path)]).exit_code == 0
    model = onnx.load(str(path))
    for entry in model.metadata_props:
        if entry.key == "poseapp.recipe":
            data = json.loads(entry.value)
            entry.value = json.dumps({**data, "codec": "made-up"})
    onnx.save(model, str(path))
    with pytest.raises(CheckpointError, match=f"{path}: recipe field 'codec' is 'made-up'"):
        create_model(path, device="cpu")


@needs_shared
def test_an_unwritable_cache_exports_to_a_temporary_folder(make_checkpoint, home, caplog):
    from poseapp import create_model

    home.mkdir(parents=True)
    (home / "exports").write_text("a file where the exports folder goes")  # mkdir fails, as on a read-only disk
    est = create_model(make_checkpoint("coco_mobilenetv2_rle"), arch=RLE_ARCH, device="cpu", backend="onnxruntime")
    assert est.backend == "onnxruntime" and "poseapp-export-" in str(est.runtime.path)
    assert "goes to" in caplog.text and "for this run only" in caplog.text


@needs_shared
def test_the_cached_export_is_made_once_and_named_by_hash_and_exporter(make_checkpoint, home):
    from poseapp import create_model
    from poseapp.hub import sha256_of
    from poseapp.runtimes.export import exporter_tag

    ckpt = make_checkpoint("coco_mobilenetv2_rle")
    create_model(ckpt, arch=RLE_ARCH, device="cpu", backend="onnxruntime")
    exports = list((home / "exports").iterdir())
    assert [p.name for p in exports] == [f"{RLE_ARCH}.{sha256_of(ckpt)[:16]}.{exporter_tag()}.onnx"]
    stamp = exports[0].stat().st_mtime_ns
    create_model(ckpt, arch=RLE_ARCH, device="cpu", backend="openvino")
    assert list((home / "exports").iterdir()) == exports and exports[0].stat().st_mtime_ns == stamp


# ---------------------------------------------------------------------------------------------- command line


@needs_shared
@needs_ultralight
def test_cli_runs_a_users_onnx_model_with_arch_or_recipe_and_they_agree(tmp_path, home):
    recipe = tmp_path / "ultralight.json"
    recipe.write_text(json.dumps({"keypoint_set": "coco", "codec": "msra", "input_size": [192, 256],
                                  "heatmap_size": [48, 64]}))
    outputs = {}
    for how in (["--pose-arch", ULTRALIGHT_ARCH], ["--pose-recipe", str(recipe)]):
        out = tmp_path / how[0].strip("-")
        result = CliRunner().invoke(main, ["--source", str(DATA / "coco"), "--pose-model", str(ULTRALIGHT), *how,
                                           "--det-model", str(DETECTOR), "--backend", "onnxruntime", "--json",
                                           "--no-save", "--out", str(out)])
        assert result.exit_code == 0, result.output
        outputs[how[0]] = json.loads((out / "predictions.json").read_text())
    a, b = outputs["--pose-arch"], outputs["--pose-recipe"]
    assert [len(im["instances"]) for im in a["images"]] == [len(im["instances"]) for im in b["images"]]
    assert sum(len(im["instances"]) for im in a["images"]) >= 10
    for ia, ib in zip(a["images"], b["images"]):
        for pa, pb in zip(ia["instances"], ib["instances"]):
            np.testing.assert_allclose(pa["keypoints"], pb["keypoints"], atol=1e-6)


@needs_ultralight
@pytest.mark.parametrize("args,flag,words", [
    (["--backend", "torch"], "--backend torch", "cannot run"),
    (["--precision", "fp16"], "--precision fp16", "needs a CUDA device (pass --device cuda"),
    (["--threads", "0"], "--threads", "0 is not in the range x>=1"),
    (["--precision", "int8"], "--precision int8 is not offered yet", "--precision bf16 is the fast one"),
])
def test_cli_backend_and_precision_errors_are_one_line_naming_the_flag(args, flag, words, tmp_path):
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), np.full((64, 48, 3), 128, np.uint8))
    result = CliRunner().invoke(main, ["--source", str(image), "--pose-model", str(ULTRALIGHT), "--pose-arch",
                                       ULTRALIGHT_ARCH, "--det-model", "none", "--out", str(tmp_path / "o"), *args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and flag in lines[0] and words in lines[0], result.stderr
    assert not (tmp_path / "o").exists()


def test_predict_options_check_backend_and_precision():
    from poseapp.job import PredictOptions

    with pytest.raises(PoseAppError, match="backend tensorrt: pass one of auto, torch, onnxruntime, openvino"):
        PredictOptions(source="a.jpg", backend="tensorrt")
    with pytest.raises(PoseAppError, match="precision fp64: pass one of"):
        PredictOptions(source="a.jpg", precision="fp64")
    with pytest.raises(PoseAppError, match="threads must be at least 1"):
        PredictOptions(source="a.jpg", threads=0)
    assert PredictOptions(source="a.jpg", backend="OpenVINO", precision="BF16").backend == "openvino"


def test_half_is_precision_fp16():
    from poseapp import create_model

    with pytest.raises(PoseAppError, match="half is precision fp16: drop one of them"):
        create_model("res50_coco-256x192", half=True, precision="bf16")
