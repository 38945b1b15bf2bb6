"""What a model file's inputs and outputs must look like for a recipe, and running a graph whose batch size
is fixed. Shared by the ONNX Runtime and OpenVINO runtimes."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from poseapp.errors import CheckpointError, arg
from poseapp.zoo import Recipe

Dim = int | None  # a fixed size, or None where the graph leaves it open (a symbolic dimension)


def expected_outputs(recipe: Recipe) -> list[tuple[str, tuple[Dim, ...]]]:
    """(what, (K, ...)) of each output the recipe's codec decodes, without the batch axis: heatmaps (K, H, W);
    SimCC/SimDR's x (K, W*ratio) and y (K, H*ratio) vectors; coordinates (K, None) (2 columns, 4 with RLE's
    sigmas)."""
    from poseapp.codecs.table import COORDINATES, HEATMAPS, codec_spec

    outputs = codec_spec(recipe).outputs
    k = recipe.num_keypoints
    w, h = recipe.input_size
    if outputs == HEATMAPS:
        hw, hh = recipe.heatmap_size
        return [("heatmaps", (k, hh, hw))]
    if outputs == COORDINATES:
        return [("coordinates", (k, None))]
    ratio = recipe.simcc_split_ratio
    return [("x vectors", (k, int(w * ratio))), ("y vectors", (k, int(h * ratio)))]


def _fits(shape: Sequence[Dim], want: Sequence[Dim]) -> bool:
    return len(shape) == len(want) and all(a is None or b is None or a == b for a, b in zip(shape, want))


def _show(shape: Sequence[Dim]) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def check_graph(where: str, recipe: Recipe, input_shape: Sequence[Dim], output_shapes: Sequence[Sequence[Dim]]) -> int | None:
    """The graph's fixed batch size (None: any), after checking its shapes against the recipe.

    Raises:
        CheckpointError: one line naming the file, what it has and what the recipe expects.
    """
    w, h = recipe.input_size
    fix = f"(pass the {arg('arch')} or recipe the model was trained with)"
    if not _fits(input_shape, (None, 3, h, w)):
        raise CheckpointError(f"{where}: its input is {_show(input_shape)} but recipe {recipe.name} feeds "
                              f"(batch, 3, {h}, {w}) crops (input_size is [width, height]) {fix}")
    want = expected_outputs(recipe)
    if len(output_shapes) != len(want):
        raise CheckpointError(f"{where}: it has {len(output_shapes)} output(s) but recipe {recipe.name}'s codec "
                              f"{recipe.codec} decodes {len(want)} ({', '.join(n for n, _ in want)}) {fix}")
    for shape, (what, dims) in zip(output_shapes, want):
        if not _fits(shape, (None, *dims)):
            raise CheckpointError(f"{where}: output {_show(shape)} is not recipe {recipe.name}'s {what} "
                                  f"{_show((None, *dims))} {fix}")
    batch = input_shape[0] if input_shape else None
    return batch if isinstance(batch, int) and batch > 0 else None


def run_fixed_batch(run: Callable[[np.ndarray], list[np.ndarray]], x: np.ndarray, batch: int | None) -> list[np.ndarray]:
    """``run`` on ``x`` in chunks of the graph's fixed ``batch`` (the last one padded), or at once (None)."""
    if batch is None or len(x) == batch:
        return run(x)
    parts = []
    for i in range(0, len(x), batch):
        chunk = x[i:i + batch]
        n = len(chunk)
        if n < batch:
            chunk = np.concatenate([chunk, np.zeros((batch - n, *chunk.shape[1:]), chunk.dtype)])
        parts.append([out[:n] for out in run(chunk)])
    return [np.concatenate(outs) for outs in zip(*parts)]


class GraphRuntime:
    """What the ONNX Runtime and OpenVINO runtimes share: a torch batch handed over as float32 numpy, run in
    chunks of the graph's fixed batch size (``self.batch``; None: any), the first outputs checked against the
    recipe, float32 tensors back. A subclass sets ``path``, ``recipe``, ``batch`` and defines ``_run``."""

    path: Path
    recipe: Recipe
    batch: int | None
    _checked = False

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        raise NotImplementedError

    def __call__(self, x) -> tuple:
        import torch

        outputs = run_fixed_batch(self._run, np.ascontiguousarray(x.detach().cpu().numpy(), np.float32), self.batch)
        if not self._checked:
            check_outputs(str(self.path), self.recipe, outputs)
            self._checked = True
        return tuple(torch.from_numpy(np.ascontiguousarray(o, np.float32)) for o in outputs)


def check_outputs(where: str, recipe: Recipe, outputs: Sequence[np.ndarray]) -> None:
    """The shapes a graph actually returned (its symbolic dimensions filled in) against the recipe."""
    for out, (what, dims) in zip(outputs, expected_outputs(recipe)):
        if not _fits(out.shape[1:], dims):
            raise CheckpointError(f"{where}: it returned {what} of shape {_show(out.shape)} but recipe "
                                  f"{recipe.name} expects {_show((out.shape[0], *dims))} (pass the {arg('arch')} "
                                  f"or recipe the model was trained with)")
