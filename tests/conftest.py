"""Shared test helpers: where ../shared is, and parity checkpoints regenerated once per session."""
from __future__ import annotations

import json
import shutil
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


def raw_reference(fx: dict, suffix: str = "") -> tuple[np.ndarray, ...]:
    """The fixture's raw head outputs for its first instance (``suffix="_flipinput"``: the mirrored crop):
    (heatmaps,), (regression,) or the SimCC/SimDR (x, y) vectors; None when the fixture has none."""
    for keys in (["raw_heatmaps"], ["raw_regression"], ["raw_simcc_x", "raw_simcc_y"], ["raw_simdr_x", "raw_simdr_y"]):
        if keys[0] + suffix in fx:
            return tuple(fx[k + suffix] for k in keys)
    return None


@pytest.fixture(scope="module")
def weights_home(tmp_path_factory):
    """A weights cache of the test module's own (POSEAPP_HOME, for the module's tests): the ONNX exports the
    onnxruntime/openvino backends make and auto's backends.json land there, not in the checkout's weights/."""
    with pytest.MonkeyPatch.context() as mp:
        home = tmp_path_factory.mktemp("weights_home")
        mp.setenv("POSEAPP_HOME", str(home))
        yield home
    shutil.rmtree(home, ignore_errors=True)  # a module's exports are ~100 MB each: not kept for the whole run


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
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode:  # say why (a full disk, a changed numpy stream), not just the exit status
                raise RuntimeError(f"{' '.join(cmd)} exited with {done.returncode}:\n{done.stdout}{done.stderr}")
            cache[key] = out
        return cache[key]

    return make


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory):
    """``random_checkpoint(zoo_name) -> Path``: a zoo model's architecture with seeded random weights, saved
    as an MMPose 1.x checkpoint. For data sets with no parity fixture (AnimalPose, Zebra, Animal
    Kingdom): speed and wiring tests only, nothing to compare with."""
    import torch

    from poseapp.models import build_model
    from poseapp.zoo import get_recipe

    folder = tmp_path_factory.mktemp("random_ckpt")
    cache: dict[str, Path] = {}

    def make(zoo_name: str) -> Path:
        if zoo_name not in cache:
            recipe = get_recipe(zoo_name)
            torch.manual_seed(0)
            model = build_model(recipe.arch, recipe.num_keypoints, recipe.input_size)
            path = folder / f"{zoo_name}.pth"
            torch.save({"meta": {"note": "random weights"}, "state_dict": model.state_dict()}, path)
            cache[zoo_name] = path
        return cache[zoo_name]

    return make


@pytest.fixture(scope="session")
def yolo_checkpoints(tmp_path_factory) -> dict[str, Path]:
    """``{"yolov8n": Path, "yolo11n": Path}``: real ultralytics checkpoints, built offline from ultralytics' own
    model yaml (seeded random weights: its trained weights cannot be downloaded here) and written by its own
    ``save``. Random weights score every box about 2e-4 at most (Detect's bias init), so they find nothing at
    the default --det-conf; 1e-4 gives boxes."""
    import torch

    from poseapp.boxes.yolo import import_yolo

    yolo = import_yolo()  # ultralytics offline and quiet
    folder = tmp_path_factory.mktemp("yolo")
    paths = {}
    for name in ("yolov8n", "yolo11n"):
        torch.manual_seed(0)
        paths[name] = folder / f"{name}.pt"
        yolo(f"{name}.yaml").save(paths[name])
    return paths


def make_truncated_avi(folder: Path) -> Path:
    """demo.mp4's 5 frames, each twice, as an MJPG AVI cut in half: the header says 10 frames, so the
    copy opens and then ends early (a cut mp4 cannot be opened at all: its index is at the end)."""
    import cv2

    cap = cv2.VideoCapture(str(DATA / "demo" / "demo.mp4"))
    full = folder / "full.avi"
    writer = cv2.VideoWriter(str(full), cv2.VideoWriter_fourcc(*"MJPG"), 5, (960, 540))
    while True:
        ok, image = cap.read()
        if not ok:
            break
        writer.write(image)
        writer.write(image)
    cap.release()
    writer.release()
    data = full.read_bytes()
    cut = folder / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    return cut


@pytest.fixture(scope="module")
def reuse_loaded_models():
    """Within a test module, the CLI loads each (checkpoint, options) once (about 3 s each): a miss calls
    the real ``poseapp.create.create_model``, so its errors are unchanged. Torch runs one intra-op thread:
    when other processes share the 2 cores, two OpenMP threads spin against them (measured 9.5 s a crop
    instead of 0.26 s)."""
    import torch

    import poseapp.create

    real, cache = poseapp.create.create_model, {}

    def cached(model, **kw):
        recipe = getattr(model, "recipe", None)  # a ResolvedModel: its path and the recipe it was resolved as
        key = (str(model), getattr(recipe, "name", None), tuple(sorted(kw.items())))
        if key not in cache:
            cache[key] = real(model, **kw)
        return cache[key]

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(poseapp.create, "create_model", cached)
            yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def file_server():
    """A static HTTP server on 127.0.0.1 (stopped after the test): ``server.files[path] = bytes`` serves them
    (404 otherwise), ``server.base`` is ``http://127.0.0.1:PORT``, ``server.requests`` lists the paths asked."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.server.requests.append(self.path)  # type: ignore[attr-defined]
            body = self.server.files.get(self.path.split("?")[0])  # type: ignore[attr-defined]
            if body is None:
                self.send_error(404, "Not Found")
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.files, httpd.requests = {}, []  # type: ignore[attr-defined]
    httpd.base = f"http://127.0.0.1:{httpd.server_address[1]}"  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true", help="also run the tests marked slow (every parity fixture "
                     "through every backend, ...): longer than CI's budget allows")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: left out unless pytest runs with --slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="slow: python -m pytest --slow runs it")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
