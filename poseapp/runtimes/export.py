"""Our PyTorch pose networks as ONNX graphs and OpenVINO IRs that carry their recipe.

An export has a dynamic batch axis and the recipe in its metadata (ONNX ``metadata_props`` /
OpenVINO ``rt_info``: ``poseapp.recipe``, ``poseapp.format``, ``poseapp.precision``), so
``--pose-model FILE`` runs it with no other argument. The ONNX Runtime and OpenVINO backends export a
checkpoint once and keep the graph in the weights cache under a name carrying the checkpoint's sha256 and
the exporter's version (:func:`cached_onnx`); every file is written under a temporary name and renamed.
"""
from __future__ import annotations

import io
import logging
import os
import warnings
from pathlib import Path

from poseapp.errors import OutputError, PoseAppError, arg
from poseapp.runtimes.base import reason
from poseapp.recipes import FORMAT, FORMAT_KEY, PRECISION_KEY, RECIPE_KEY, recipe_to_json
from poseapp.zoo import Recipe

log = logging.getLogger(__name__)

EXPORTER = 1
"""Bumped whenever the export changes what it writes: cached graphs from an older exporter are not reused."""
OPSET = 17
INPUT, OUTPUTS = "crops", {1: ["output"], 2: ["simcc_x", "simcc_y"]}


def exporter_tag() -> str:
    import torch

    return f"x{EXPORTER}-torch{torch.__version__.split('+')[0]}-opset{OPSET}"


def metadata_for(recipe: Recipe, precision: str = "fp32") -> dict[str, str]:
    return {RECIPE_KEY: recipe_to_json(recipe), FORMAT_KEY: str(FORMAT), PRECISION_KEY: precision}


def onnx_bytes(network, recipe: Recipe, precision: str = "fp32") -> bytes:
    """The network as a serialised ONNX model with the recipe in its metadata and a dynamic batch axis. The
    network is traced in fp32 on the CPU in eval mode (``.cpu().float()`` moves the module itself there)."""
    import torch

    from poseapp.runtimes.base import as_outputs, require

    onnx = require("onnx")

    network = network.cpu().float().eval()
    w, h = recipe.input_size
    x = torch.zeros(2, 3, h, w)
    with torch.inference_mode():
        count = len(as_outputs(network(x)))
    names = OUTPUTS.get(count, [f"output{i}" for i in range(count)])
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation notice and tracer warnings
        warnings.simplefilter("ignore")
        torch.onnx.export(network, (x,), buffer, input_names=[INPUT], output_names=names, opset_version=OPSET,
                          dynamic_axes={n: {0: "batch"} for n in [INPUT, *names]}, do_constant_folding=True,
                          dynamo=False)
    model = onnx.load_from_string(buffer.getvalue())
    for key, value in metadata_for(recipe, precision).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name = "poseapp"
    return model.SerializeToString()


def write_onnx(network, recipe: Recipe, path: Path, precision: str = "fp32") -> Path:
    """Export to ``path`` atomically (a temporary name in the same folder, then a rename).

    Raises:
        OutputError: the folder cannot be made or written; PoseAppError: the network does not export.
    """
    from poseapp.sinks.files import atomic_write

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e} (choose a writable folder)") from e
    try:
        data = onnx_bytes(network, recipe, precision)
    except Exception as e:  # an operator the exporter cannot trace, ...
        raise PoseAppError(f"cannot export {recipe.name} to ONNX ({type(e).__name__}: {reason(e)}): pass "
                           f"{arg('backend')} torch") from e
    return atomic_write(path, lambda f: f.write(data))


def write_openvino(onnx_path: Path, recipe: Recipe, xml_path: Path, precision: str = "fp32") -> Path:
    """An OpenVINO IR (``xml_path`` and its .bin) from an ONNX graph, fp32 weights, the recipe in rt_info.
    Both files are written under temporary names and renamed, the .bin first."""
    from poseapp.runtimes.base import require

    ov = require("openvino")
    xml_path = Path(xml_path)
    bin_path = xml_path.with_suffix(".bin")
    try:
        model = ov.convert_model(str(onnx_path))
    except Exception as e:  # an operator OpenVINO cannot convert
        raise PoseAppError(f"OpenVINO cannot convert {recipe.name} ({reason(e)}): export --format onnx instead") from e
    for key, value in metadata_for(recipe, precision).items():
        model.set_rt_info(value, key.split("."))
    tmp = xml_path.with_name(f".{xml_path.stem}.{os.getpid()}.tmp.xml")
    try:
        xml_path.parent.mkdir(parents=True, exist_ok=True)
        ov.save_model(model, str(tmp), compress_to_fp16=False)
        os.replace(tmp.with_suffix(".bin"), bin_path)
        os.replace(tmp, xml_path)
    except OSError as e:
        raise OutputError(f"cannot write {xml_path}: {e.strerror or e} (choose a writable folder)") from e
    except RuntimeError as e:  # OpenVINO's own errors (a full disk while it writes the .bin, ...)
        raise OutputError(f"cannot write {xml_path}: {reason(e)}") from e
    finally:
        tmp.unlink(missing_ok=True)
        tmp.with_suffix(".bin").unlink(missing_ok=True)
    return xml_path


def cached_onnx(recipe: Recipe, checkpoint: Path, network_factory, *, cache: Path | None = None) -> Path:
    """The checkpoint's ONNX export in the weights cache (``exports/``), made on first use.

    Args:
        recipe: the recipe the checkpoint follows (its name is part of the file's name).
        checkpoint: the .pth whose sha256 names the export.
        network_factory: () -> the loaded torch network, called only when there is no export yet.
    """
    from poseapp.hub import cache_dir, sha256_of

    digest = sha256_of(checkpoint)[:16]
    folder = Path(cache) if cache is not None else cache_dir() / "exports"
    path = folder / f"{recipe.name}.{digest}.{exporter_tag()}.onnx"
    if path.is_file():
        return path
    log.info("exporting %s (%s) to ONNX once: %s", recipe.name, checkpoint.name, path)
    try:
        return write_onnx(network_factory(), recipe, path)
    except OutputError as e:  # a read-only cache: this run's export lives in a temporary folder
        import atexit
        import shutil
        import tempfile

        spare = Path(tempfile.mkdtemp(prefix="poseapp-export-"))
        atexit.register(shutil.rmtree, spare, ignore_errors=True)
        log.warning("%s; the ONNX export of %s goes to %s for this run only (set POSEAPP_HOME to a writable "
                    "folder to keep it)", e, recipe.name, spare)
        return write_onnx(network_factory(), recipe, spare / path.name)
