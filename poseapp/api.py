"""Building a ready estimator from a zoo name or a checkpoint path."""
from __future__ import annotations

import logging
from pathlib import Path

from poseapp.errors import CheckpointError, PoseAppError
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
        raise PoseAppError("--half needs a CUDA device (drop --half or pass --device cuda)")
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
            raise PoseAppError(f"--device {device}: CUDA is not available on this machine (use --device cpu)")
        count = torch.cuda.device_count()
        if cuda.group(1) is not None and int(cuda.group(1)) >= count:
            raise PoseAppError(f"--device {device}: this machine has {count} CUDA device(s), cuda:0 to "
                               f"cuda:{count - 1}; pick one of them")
        return text
    if text == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise PoseAppError(f"--device {device}: Apple's MPS is not available on this machine "
                               f"(use --device cpu)")
        return "mps"
    raise PoseAppError(f"--device {device} is not a device: pass {_DEVICES}")


POSE_FLAGS = ("--pose-model", "--pose-arch")
"""The command-line flags that give ``model`` and ``arch`` (predict's); error messages name them."""


def resolve_recipe(model: str | Path, arch: str | None = None, *,
                   flags: tuple[str, str] = POSE_FLAGS) -> tuple[Recipe, Path | None]:
    """(recipe, local checkpoint path or None for a zoo name still to be fetched).

    ``model`` is a zoo name or a checkpoint path. A path's recipe is ``arch`` (a zoo name) when given,
    else the zoo entry whose file name the path bears. ``flags`` are the options that gave ``model`` and
    ``arch``, for the fixes the errors suggest.
    """
    path = Path(model)
    looks_like_path = path.suffix in {".pth", ".pt", ".ckpt", ".bin"} or path.parent != Path(".") or path.exists()
    if not looks_like_path:
        return get_recipe(str(model)), None
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist (check {flags[0]}, or pass a zoo name: "
                              f"python infer.py models)")
    if arch is not None:
        return get_recipe(arch), path
    recipe = recipe_for_file(path)
    if recipe is None:
        raise CheckpointError(f"cannot tell which model '{path.name}' is: its file name matches no zoo entry "
                              f"(pass {flags[1]} NAME with the zoo name whose recipe it follows)")
    return recipe, path


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


def fetch_weights(recipe: Recipe, *, cache: Path | None = None) -> Path:
    """The recipe's checkpoint in the weights cache (or ``cache``), downloaded and sha256-checked on first use."""
    if not recipe.url:
        raise PoseAppError(f"model '{recipe.name}' has no published weights")
    from poseapp.hub import fetch

    log.info("model %s: weights %s", recipe.name, recipe.filename)
    return fetch(recipe.url, recipe.filename, recipe.sha256_prefix, name=recipe.name, cache=cache)


def is_downloaded(recipe: Recipe) -> bool:
    """Whether the recipe's checkpoint is in the weights cache and verified (no network)."""
    from poseapp.hub import cached_path

    return recipe.filename is not None and cached_path(recipe.filename, recipe.sha256_prefix) is not None


def create_model(model: str | Path, *, arch: str | None = None, device: str = "auto", half: bool = False,
                 batch_size: int = 32, flip_test: bool | None = None,
                 flags: tuple[str, str] = POSE_FLAGS) -> TopDownEstimator:
    """A TopDownEstimator for a zoo name (fetched into the weights cache on first use) or a checkpoint path.

    Args:
        model: zoo name (``python infer.py models``) or path to a checkpoint (.pth).
        arch: for a path, the zoo name whose recipe the checkpoint follows (else taken from its file name).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (see ``resolve_device``).
        half: float16 inference (CUDA only).
        batch_size: crops per forward pass.
        flip_test: None keeps the recipe's flip test (on for the published configs).
        flags: the command-line flags that gave ``model`` and ``arch``, named in error messages.
    """
    from poseapp.models import build_model, load_weights

    device = resolve_device(device, half=half)  # before any download or load
    recipe, path = resolve_recipe(model, arch, flags=flags)
    if path is None:
        if not is_downloaded(recipe):
            from poseapp.hub import cache_dir, is_offline

            if not is_offline():
                log.warning("pose model %s is not downloaded yet: fetching %s into %s (once; `python infer.py "
                            "fetch %s` does it ahead of time)", recipe.name, recipe.filename, cache_dir(), recipe.name)
        path = fetch_weights(recipe)
    else:
        _warn_on_hash_mismatch(path)
    network = build_model(recipe.arch, recipe.num_keypoints, recipe.input_size)
    load_weights(network, path, target=f"{recipe.name} ({recipe.arch}, {recipe.num_keypoints} keypoints)",
                 arch_flag=flags[1])
    return TopDownEstimator(network, recipe, device=device, half=half, batch_size=batch_size, flip_test=flip_test)


def list_models() -> list[Recipe]:
    """Every model of the zoo."""
    return list_recipes()


__all__ = ["create_model", "fetch_weights", "is_downloaded", "list_models", "resolve_recipe", "resolve_device"]
