"""Shared test helpers: where ../shared is, and parity checkpoints regenerated once per session."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DATA = SHARED / "data"
PARITY = SHARED / "parity"
DETECTOR = SHARED / "weights" / "yolov8n-int8.onnx"

needs_shared = pytest.mark.skipif(
    not (PARITY / "make_checkpoint.py").is_file(),
    reason="../shared (parity fixtures, real data, detector) is not beside the project: "
    "these tests only run in the project's CI and developer checkouts",
)


def load_fixture(name: str) -> dict:
    """The parity fixture ``name`` as a dict of numpy arrays (strings unwrapped)."""
    with np.load(PARITY / "fixtures" / f"{name}.npz", allow_pickle=False) as f:
        out = {k: f[k] for k in f.files}
    for k, v in out.items():
        if v.dtype.kind == "U" and v.ndim == 0:
            out[k] = str(v)
    out["meta"] = json.loads(out["meta_json"])
    return out


@pytest.fixture(scope="session")
def make_checkpoint(tmp_path_factory):
    """``make_checkpoint(name, layout="1x"|"0x"|"sithu", numpy_meta=False) -> Path``.

    Runs ../shared/parity/make_checkpoint.py (which checks the manifest's weights_sha256) once per
    (name, layout, numpy_meta) in a session temp folder, and returns the file's path.
    """
    folder = tmp_path_factory.mktemp("parity_ckpt")
    cache: dict[tuple, Path] = {}

    def make(name: str, layout: str = "1x", numpy_meta: bool = False) -> Path:
        key = (name, layout, numpy_meta)
        if key not in cache:
            manifest = PARITY / "manifests" / (f"{name}.json" if layout == "sithu" else f"{name}.{layout}.json")
            out = folder / f"{name}.{layout}{'.npmeta' if numpy_meta else ''}.pth"
            cmd = [sys.executable, str(PARITY / "make_checkpoint.py"), str(manifest), str(out)]
            if numpy_meta:
                cmd.append("--numpy-meta")
            subprocess.run(cmd, check=True, capture_output=True, text=True)
            cache[key] = out
        return cache[key]

    return make
