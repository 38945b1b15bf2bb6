"""Creating a ready estimator: the device checked, the model resolved once (a zoo name or a checkpoint path and
the recipe it follows), its weights fetched and checked, the network built."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from poseapp.errors import CheckpointError, PoseAppError, arg
from poseapp.estimator import TopDownEstimator
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
    """A pose model as ``resolve_model`` found it: its recipe, and its local checkpoint (None for a zoo model
    whose weights are fetched into the cache). ``create_model`` takes it as it is, without resolving again."""

    recipe: Recipe
    path: Path | None = None

    def __str__(self) -> str:
        return str(self.path) if self.path is not None else self.recipe.name


def resolve_model(model: "str | Path | ResolvedModel", arch: str | None = None) -> ResolvedModel:
    """What ``model`` is: a zoo name, or a checkpoint path whose recipe is ``arch`` (a zoo name) when given,
    else the zoo entry whose file name the path bears. Nothing is read or downloaded.

    Raises:
        CheckpointError, UnknownNameError: naming the argument (``model``, ``arch``) that was wrong.
    """
    if isinstance(model, ResolvedModel):
        if arch is not None and arch != model.recipe.name:
            raise PoseAppError(f"{arg('arch')} {arch}: the model was resolved as {model.recipe.name} already "
                               f"(resolve_model(model, arch) takes the arch; pass one or the other)")
        return model
    if not str(model).strip():
        raise CheckpointError(f"{arg('model')} is empty: pass a zoo name (python infer.py models) or a checkpoint path")
    path = Path(model)
    looks_like_path = path.suffix in {".pth", ".pt", ".ckpt", ".bin"} or path.parent != Path(".") or path.exists()
    if not looks_like_path:
        return ResolvedModel(get_recipe(str(model)))
    if path.is_dir():
        raise CheckpointError(f"{arg('model')} {path} is a folder: pass the checkpoint file in it, or a zoo name")
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist (check {arg('model')}, or pass a zoo name: "
                              f"python infer.py models)")
    if arch is not None:
        return ResolvedModel(get_recipe(arch), path)
    recipe = recipe_for_file(path)
    if recipe is None:
        raise CheckpointError(f"cannot tell which model '{path.name}' is: its file name matches no zoo entry "
                              f"(pass {arg('arch')} NAME with the zoo name whose recipe it follows)")
    return ResolvedModel(recipe, path)


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


def create_model(model: "str | Path | ResolvedModel", *, arch: str | None = None, device: str = "auto",
                 half: bool = False, batch_size: int = 32, flip_test: bool | None = None,
                 offline: bool | None = None) -> TopDownEstimator:
    """A TopDownEstimator for a zoo name (fetched into the weights cache on first use) or a checkpoint path.

    Args:
        model: zoo name (``python infer.py models``), path to a checkpoint (.pth), or what ``resolve_model``
            returned (used as it is).
        arch: for a path, the zoo name whose recipe the checkpoint follows (else taken from its file name).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (see ``resolve_device``).
        half: float16 inference (CUDA only).
        batch_size: crops per forward pass.
        flip_test: None keeps the recipe's flip test (on for the published configs).
        offline: no download (a zoo model must be in the cache); None: as ``POSEAPP_OFFLINE`` says.

    Errors name the argument that was wrong (``PoseAppError.render`` shows a command line's flag instead).
    """
    from poseapp.models import build_model, load_weights

    device = resolve_device(device, half=half)  # before any download or load
    resolved = resolve_model(model, arch)
    recipe, path = resolved.recipe, resolved.path
    if path is None:
        from poseapp.hub import cache_dir, is_offline

        offline = is_offline() if offline is None else offline
        if not is_downloaded(recipe):
            if not offline:
                log.warning("pose model %s is not downloaded yet: fetching %s into %s (once; `python infer.py "
                            "fetch %s` does it ahead of time)", recipe.name, recipe.filename, cache_dir(), recipe.name)
        path = fetch_weights(recipe, offline=offline)
    else:
        _warn_on_hash_mismatch(path)
    network = build_model(recipe.arch, recipe.num_keypoints, recipe.input_size)
    load_weights(network, path, target=f"{recipe.name} ({recipe.arch}, {recipe.num_keypoints} keypoints)")
    return TopDownEstimator(network, recipe, device=device, half=half, batch_size=batch_size, flip_test=flip_test)


def list_models() -> list[Recipe]:
    """Every model of the zoo."""
    return list_recipes()


__all__ = ["ResolvedModel", "create_model", "fetch_weights", "is_downloaded", "list_models", "resolve_device",
           "resolve_model", "resolve_recipe"]
