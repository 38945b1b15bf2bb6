"""Creating a ready estimator: the device checked, the model resolved once (a zoo name or a checkpoint path and
the recipe it follows), its weights fetched and checked, the network built."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from poseapp.errors import CheckpointError, PoseAppError, arg
from poseapp.estimator import TopDownEstimator
from poseapp.runtimes.base import GRAPH_SUFFIXES
from poseapp.zoo import Recipe, get_recipe, hash_prefix_in_filename, list_recipes, recipe_for_file

log = logging.getLogger(__name__)


_DEVICES = "auto, cpu, cuda, cuda:N (or just N) or mps"


def resolve_device(device: str = "auto", *, half: bool = False) -> str:
    """The torch device for ``device`` (case-insensitive): ``auto`` -> ``cuda`` when available, else ``cpu``;
    ``cpu``; ``cuda``/``cuda:N``/``N`` when that CUDA device exists; ``mps`` where torch has it.

    Raises:
        PoseAppError: an unknown device, one this machine does not have, or ``half`` (float16) on a device
            that is not CUDA (before any model loads).
    """
    resolved = _resolve_device(device)
    if half and not resolved.startswith("cuda"):
        raise PoseAppError(f"{arg('half')} needs a CUDA device (drop {arg('half')} or pass {arg('device')} cuda)")
    return resolved


def _resolve_device(device: str) -> str:
    import re

    import torch

    text = str(device).strip().lower()
    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if text == "cpu":
        return "cpu"
    if text.isascii() and text.isdigit():
        text = f"cuda:{text}"
    cuda = re.fullmatch(r"cuda(?::([0-9]+))?", text)
    if cuda:
        if not torch.cuda.is_available():
            raise PoseAppError(f"{arg('device')} {device}: CUDA is not available on this machine "
                               f"(use {arg('device')} cpu)")
        count = torch.cuda.device_count()
        if cuda.group(1) is not None and int(cuda.group(1)) >= count:
            raise PoseAppError(f"{arg('device')} {device}: this machine has {count} CUDA device(s), cuda:0 to "
                               f"cuda:{count - 1}; pick one of them")
        return text
    if text == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise PoseAppError(f"{arg('device')} {device}: Apple's MPS is not available on this machine "
                               f"(use {arg('device')} cpu)")
        return "mps"
    raise PoseAppError(f"{arg('device')} {device} is not a device: pass {_DEVICES}")


@dataclass(frozen=True)
class ResolvedModel:
    """A pose model as ``resolve_model`` found it: its recipe, its local file (a checkpoint, an .onnx graph or
    an OpenVINO .xml; None for a zoo model whose weights are fetched into the cache) and the precision an
    export recorded (None: fp32). ``create_model`` takes it as it is, without resolving again."""

    recipe: Recipe
    path: Path | None = None
    precision: str | None = None

    def __str__(self) -> str:
        return str(self.path) if self.path is not None else self.recipe.name




def resolve_model(model: "str | Path | ResolvedModel", arch: str | None = None,
                  recipe: "str | Path | Recipe | None" = None) -> ResolvedModel:
    """What ``model`` is: a zoo name; a checkpoint path whose recipe is ``arch`` (a zoo name) when given, else
    the zoo entry whose file name the path bears; or an .onnx/.xml model file whose recipe is ``arch``, a
    ``recipe`` (a JSON file, see ``poseapp.recipes``, or a Recipe), else the one its poseapp export wrote
    into it. Nothing is downloaded.

    Raises:
        CheckpointError, UnknownNameError: naming the argument (``model``, ``arch``, ``recipe``) that was wrong.
    """
    if isinstance(model, ResolvedModel):
        if arch is not None and arch != model.recipe.name:
            raise PoseAppError(f"{arg('arch')} {arch}: the model was resolved as {model.recipe.name} already "
                               f"(resolve_model(model, arch) takes the arch; pass one or the other)")
        return model
    if not str(model).strip():
        raise CheckpointError(f"{arg('model')} is empty: pass a zoo name (python infer.py models) or a checkpoint path")
    if arch is not None and recipe is not None:
        raise PoseAppError(f"{arg('arch')} and {arg('recipe')} both say which recipe the model follows: pass one")
    path = Path(model)
    suffix = path.suffix.lower()
    looks_like_path = (suffix in {".pth", ".pt", ".ckpt", ".bin", *GRAPH_SUFFIXES} or path.parent != Path(".")
                       or path.exists())
    if not looks_like_path:
        if recipe is not None:
            raise PoseAppError(f"{arg('recipe')} is for a model file (.onnx, .xml); zoo model {model} has its own")
        return ResolvedModel(get_recipe(str(model)))
    if path.is_dir():
        raise CheckpointError(f"{arg('model')} {path} is a folder: pass the checkpoint file in it, or a zoo name")
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist (check {arg('model')}, or pass a zoo name: "
                              f"python infer.py models)")
    if suffix in GRAPH_SUFFIXES:
        return _resolve_graph(path, arch, recipe)
    if recipe is not None:
        raise PoseAppError(f"{arg('recipe')} is for an ONNX/OpenVINO model file; a checkpoint ({path.name}) takes "
                           f"{arg('arch')} NAME, the zoo recipe it follows")
    if arch is not None:
        return ResolvedModel(get_recipe(arch), path)
    found = recipe_for_file(path)
    if found is None:
        raise CheckpointError(f"cannot tell which model '{path.name}' is: its file name matches no zoo entry "
                              f"(pass {arg('arch')} NAME with the zoo name whose recipe it follows)")
    return ResolvedModel(found, path)


def _resolve_graph(path: Path, arch: str | None, recipe: "str | Path | Recipe | None") -> ResolvedModel:
    """An .onnx/.xml file's recipe: the one given, else its export's metadata (checked), else an error."""
    from poseapp.recipes import PRECISION_KEY, read_recipe_file, recipe_from_metadata
    from poseapp.runtimes.base import PRECISIONS

    if path.suffix.lower() == ".xml":
        from poseapp.runtimes.openvino_runtime import ir_metadata as read_metadata
    else:
        from poseapp.runtimes.onnx_runtime import onnx_metadata as read_metadata
    metadata = read_metadata(path)
    precision = metadata.get(PRECISION_KEY)
    if precision is not None and precision not in PRECISIONS:
        raise CheckpointError(f"{path.name}: its poseapp.precision metadata is '{precision[:40]}', not fp32, bf16 "
                              f"or fp16 (export it again with python infer.py export)")
    if arch is not None:
        return ResolvedModel(get_recipe(arch), path, precision)
    if isinstance(recipe, Recipe):
        return ResolvedModel(recipe, path, precision)
    if recipe is not None:
        return ResolvedModel(read_recipe_file(recipe), path, precision)
    found = recipe_from_metadata(metadata, str(path))
    if found is None:
        raise CheckpointError(f"{path.name} carries no poseapp recipe: pass {arg('arch')} NAME (the zoo recipe it "
                              f"follows: input size, normalisation, codec) or {arg('recipe')} recipe.json")
    return ResolvedModel(found, path, precision)


def resolve_recipe(model: str | Path, arch: str | None = None) -> tuple[Recipe, Path | None]:
    """(recipe, local checkpoint path or None): ``resolve_model`` as a pair."""
    resolved = resolve_model(model, arch)
    return resolved.recipe, resolved.path


def _warn_on_hash_mismatch(path: Path) -> None:
    """A local file is used as given, but a hash prefix in its name that its content lacks is worth a warning."""
    prefix = hash_prefix_in_filename(path.name)
    if prefix is None:
        return
    from poseapp.hub import sha256_of

    digest = sha256_of(path)
    if not digest.startswith(prefix):
        log.warning("%s: file name says sha256 %s... but the content hashes to %s...; using it anyway",
                    path, prefix, digest[:8])


def fetch_weights(recipe: Recipe, *, cache: Path | None = None, offline: bool | None = None) -> Path:
    """The recipe's checkpoint in the weights cache (or ``cache``), downloaded and sha256-checked on first use
    (``offline``: never; None: as ``POSEAPP_OFFLINE`` says)."""
    if not recipe.url:
        raise PoseAppError(f"model '{recipe.name}' has no published weights")
    from poseapp.hub import fetch

    log.info("model %s: weights %s", recipe.name, recipe.filename)
    return fetch(recipe.url, recipe.filename, recipe.sha256_prefix, name=recipe.name, cache=cache, offline=offline)


def is_downloaded(recipe: Recipe) -> bool:
    """Whether the recipe's checkpoint is in the weights cache and verified (no network)."""
    from poseapp.hub import cached_path

    return recipe.filename is not None and cached_path(recipe.filename, recipe.sha256_prefix) is not None


def create_model(model: "str | Path | ResolvedModel", *, arch: str | None = None,
                 recipe: "str | Path | Recipe | None" = None, device: str = "auto", half: bool = False,
                 backend: str = "auto", precision: str | None = None, threads: int | None = None,
                 batch_size: int = 32, flip_test: bool | None = None, offline: bool | None = None) -> TopDownEstimator:
    """A TopDownEstimator for a zoo name (fetched into the weights cache on first use), a checkpoint path, or an
    .onnx/.xml model file.

    Args:
        model: zoo name (``python infer.py models``), path to a checkpoint (.pth), an ONNX graph or OpenVINO IR
            (a poseapp export, or any pose model with ``arch``/``recipe``), or what ``resolve_model`` returned.
        arch: for a path, the zoo name whose recipe the model follows (else taken from its file name or from
            an export's metadata).
        recipe: for an .onnx/.xml file, its recipe instead: a JSON file (``poseapp.recipes``) or a Recipe.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (see ``resolve_device``).
        half: float16 inference (CUDA only): ``precision="fp16"``.
        backend: ``auto`` (the fastest here at fp32 results, measured once: ``runtimes.auto``), ``torch``,
            ``onnxruntime`` or ``openvino``. A checkpoint is exported to ONNX once for the last two.
        precision: ``fp32`` (the published accuracy), ``bf16`` (CPUs with AMX/AVX512-BF16, or CUDA), ``fp16``
            (CUDA); None: what an export recorded, else fp32.
        threads: CPU threads for the network (None: the CPUs this process may use for ONNX Runtime and
            OpenVINO; torch's own setting, ``torch.get_num_threads()``, for torch).
        batch_size: crops per forward pass.
        flip_test: None keeps the recipe's flip test (on for the published configs).
        offline: no download (a zoo model must be in the cache); None: as ``POSEAPP_OFFLINE`` says.

    Errors name the argument that was wrong (``PoseAppError.render`` shows a command line's flag instead).
    """
    from poseapp.runtimes.base import check_threads
    from poseapp.runtimes.select import create_runtime

    if half and precision not in (None, "fp16"):
        raise PoseAppError(f"{arg('half')} is {arg('precision')} fp16: drop one of them")
    device = resolve_device(device, half=half)  # before any download or load
    threads = None if threads is None else check_threads(threads)
    resolved = resolve_model(model, arch, recipe)
    recipe = resolved.recipe
    chosen = "fp16" if half else precision or _file_precision(resolved, device, backend)
    path = local_file(resolved, offline)
    network = None if path.suffix.lower() in GRAPH_SUFFIXES else load_network(recipe, path)
    runtime = create_runtime(recipe, checkpoint=path, network=lambda: network, backend=backend, precision=chosen,
                             device=device, threads=threads)
    log.info("pose model %s on %s, %s", recipe.name, runtime.backend, runtime.precision)
    return TopDownEstimator(runtime, recipe, batch_size=batch_size, flip_test=flip_test)


def _file_precision(resolved: ResolvedModel, device: str, backend: str) -> str:
    """The precision an export recorded, where it can run here; else fp32, with a warning (nobody asked for it)."""
    from poseapp.runtimes.base import check_precision

    wanted = resolved.precision or "fp32"
    if wanted == "fp32":
        return wanted
    try:
        check_precision(wanted, device)
    except PoseAppError as e:
        log.warning("%s was exported to run at %s, which cannot run here (%s): running fp32", resolved.path.name,
                    wanted, e)
        return "fp32"
    if wanted == "bf16" and str(backend).strip().lower() == "onnxruntime":
        log.warning("%s was exported to run at bf16, which onnxruntime does not offer: running fp32",
                    resolved.path.name)
        return "fp32"
    return wanted


def local_file(resolved: ResolvedModel, offline: bool | None = None) -> Path:
    """The model's file on this machine: the path given, or a zoo model's weights fetched into the cache on
    first use (``offline``: never; None: as ``POSEAPP_OFFLINE`` says)."""
    if resolved.path is not None:
        _warn_on_hash_mismatch(resolved.path)
        return resolved.path
    from poseapp.hub import cache_dir, is_offline

    recipe = resolved.recipe
    offline = is_offline() if offline is None else offline
    if not is_downloaded(recipe) and not offline:
        log.warning("pose model %s is not downloaded yet: fetching %s into %s (once; `python infer.py "
                    "fetch %s` does it ahead of time)", recipe.name, recipe.filename, cache_dir(), recipe.name)
    return fetch_weights(recipe, offline=offline)


def load_network(recipe: Recipe, checkpoint: Path):
    """The recipe's torch network with the checkpoint's weights (strict, weights-only), in eval mode."""
    from poseapp.models import build_model, load_weights

    network = build_model(recipe.arch, recipe.num_keypoints, recipe.input_size)
    load_weights(network, checkpoint, target=f"{recipe.name} ({recipe.arch}, {recipe.num_keypoints} keypoints)")
    return network.eval()


def list_models() -> list[Recipe]:
    """Every model of the zoo."""
    return list_recipes()


__all__ = ["ResolvedModel", "create_model", "fetch_weights", "is_downloaded", "list_models", "load_network",
           "local_file", "resolve_device",
           "resolve_model", "resolve_recipe"]
