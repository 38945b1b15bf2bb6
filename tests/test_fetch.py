"""``fetch``, ``models info`` and fetch-on-first-use through the command line, against a real HTTP server
on 127.0.0.1 reached through POSEAPP_MIRROR (the published URLs' hosts are never contacted).

The zoo's hash prefixes belong to the published files, which this machine cannot download; a test that
needs a download to verify serves its own bytes and puts their hash into that zoo entry (monkeypatched,
so everything else about the entry, its URL path and file name included, is the real one)."""
from __future__ import annotations

import hashlib
import logging
from dataclasses import replace
from urllib.parse import urlsplit

import numpy as np
import pytest
from click.testing import CliRunner, Result

from conftest import DATA, DETECTOR, needs_shared
from poseapp import zoo
from poseapp.cli import main

ZEBRA = "res50_zebra-160x160"
BYTES = np.random.default_rng(1).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
SHA = hashlib.sha256(BYTES).hexdigest()


def cli(*args) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def errors(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


@pytest.fixture
def mirror(file_server, tmp_path, monkeypatch):
    """POSEAPP_MIRROR -> the local server under /pfx, an empty POSEAPP_HOME, online."""
    monkeypatch.setenv("POSEAPP_MIRROR", f"{file_server.base}/pfx")
    monkeypatch.setenv("POSEAPP_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("POSEAPP_OFFLINE", raising=False)
    return file_server


def serve(server, monkeypatch, name: str, body: bytes = BYTES, prefix: str | None = None) -> zoo.Recipe:
    """Serve ``body`` at the mirrored path of zoo entry ``name``'s URL; its hash prefix becomes ``prefix``
    (default: that of ``body``). Returns the patched recipe."""
    recipe = replace(zoo.get_recipe(name), sha256_prefix=prefix or hashlib.sha256(body).hexdigest()[:8])
    monkeypatch.setitem(zoo._entries(), name, recipe)
    server.files["/pfx" + urlsplit(recipe.url).path] = body
    return recipe


def test_fetch_downloads_verifies_and_never_again(mirror, monkeypatch, tmp_path):
    recipe = serve(mirror, monkeypatch, ZEBRA)
    path = tmp_path / "home" / recipe.filename
    info = cli("models", "info", ZEBRA)
    assert "downloaded:    no" in info.stdout
    assert f"url:           {mirror.base}/pfx/mmpose/animal/resnet/{recipe.filename}" in info.stdout

    result = cli("fetch", ZEBRA)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(path) and path.read_bytes() == BYTES
    assert mirror.requests == [f"/pfx/mmpose/animal/resnet/{recipe.filename}"]
    assert sorted(p.name for p in path.parent.iterdir()) == [recipe.filename, recipe.filename + ".sha256"]

    again = cli("fetch", ZEBRA)
    assert again.exit_code == 0 and again.stdout.strip() == str(path)
    assert len(mirror.requests) == 1  # verified once: no request, no download
    assert "downloaded:    yes (sha256 verified)" in cli("models", "info", ZEBRA).stdout


def test_fetch_rejects_wrong_bytes_and_keeps_nothing(mirror, monkeypatch, tmp_path):
    recipe = serve(mirror, monkeypatch, ZEBRA, prefix="0" * 8 if not SHA.startswith("0") else "f" * 8)
    result = cli("fetch", ZEBRA)
    assert result.exit_code == 1
    (line,) = errors(result)
    url = f"{mirror.base}/pfx/mmpose/animal/resnet/{recipe.filename}"
    assert url in line and f"expected prefix {recipe.sha256_prefix}" in line and f"got {SHA}" in line
    assert not (tmp_path / "home").exists() or list((tmp_path / "home").iterdir()) == []


def test_fetch_goes_on_after_a_failure_and_lists_it(mirror, monkeypatch, tmp_path):
    good = serve(mirror, monkeypatch, ZEBRA)
    missing = "res101_zebra-160x160"  # not served: 404
    result = cli("fetch", missing, ZEBRA)
    assert result.exit_code == 1
    assert (tmp_path / "home" / good.filename).read_bytes() == BYTES
    assert "1 of 2 fetched" in result.stderr and "1 failed:" in result.stderr
    assert f"  {missing}: " in result.stderr and "HTTP 404" in result.stderr
    assert result.stdout.strip() == str(tmp_path / "home" / good.filename)


def test_dry_run_fetches_nothing(mirror, tmp_path):
    result = cli("fetch", "--dataset", "zebra", "--dry-run")
    assert result.exit_code == 0, result.output
    names = [r.name for r in zoo.list_recipes() if r.dataset == "zebra"]
    lines = result.stdout.splitlines()
    assert len(lines) == len(names) == 3
    for name, line in zip(names, lines):
        r = zoo.get_recipe(name)
        assert line == (f"{name}: would download {mirror.base}/pfx{urlsplit(r.url).path} -> "
                        f"{tmp_path / 'home' / r.filename} (sha256 {r.sha256_prefix}...)")
    assert mirror.requests == [] and not (tmp_path / "home").exists()
    everything = cli("fetch", "--all", "--dry-run", "--dir", tmp_path / "elsewhere")
    assert everything.exit_code == 0
    assert len(everything.stdout.splitlines()) == len(zoo.list_recipes())
    assert all(str(tmp_path / "elsewhere") in line for line in everything.stdout.splitlines())
    assert mirror.requests == []


def test_fetch_into_another_folder(mirror, monkeypatch, tmp_path):
    recipe = serve(mirror, monkeypatch, ZEBRA)
    result = cli("fetch", ZEBRA, "--dir", tmp_path / "models")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "models" / recipe.filename).read_bytes() == BYTES
    assert not (tmp_path / "home").exists()


def test_fetch_name_errors_download_nothing(mirror):
    (line,) = errors(result := cli("fetch", ZEBRA, "hrnet-w32-coco-256x192"))
    assert result.exit_code == 2
    assert "unknown model 'hrnet-w32-coco-256x192'" in line and "Did you mean: hrnet-w32_coco-256x192" in line
    assert "yolo11n.pt" in line  # detector names are fetchable too
    (line,) = errors(result := cli("fetch", "udp-psa-w48_coco-256x192"))
    assert result.exit_code == 2 and "has no public weights: listed in the sithu31296" in line
    (line,) = errors(result := cli("fetch"))
    assert result.exit_code == 2 and "--all or --dataset" in line
    (line,) = errors(result := cli("fetch", "--dataset", "zebraa"))
    assert result.exit_code == 2 and "unknown data set 'zebraa'. Did you mean: zebra" in line
    assert mirror.requests == []


def test_fetch_offline_makes_no_request(mirror, monkeypatch, tmp_path):
    recipe = serve(mirror, monkeypatch, ZEBRA)
    result = cli("fetch", ZEBRA, "--offline")
    assert result.exit_code == 1
    (line,) = errors(result)
    assert f"{recipe.filename} is not in the cache (offline: --offline or POSEAPP_OFFLINE)" in line
    assert f"python infer.py fetch {ZEBRA}" in line
    assert mirror.requests == []


def test_detector_names_are_fetched_from_ultralytics_release(mirror, tmp_path, yolo_checkpoints):
    """A detector name downloads ultralytics' release asset (here through the mirror); the file is a real
    ultralytics checkpoint, so the allow-list passes it. What it refuses: tests/test_checkpoint_safety.py."""
    from ultralytics.utils.downloads import GITHUB_ASSETS_REPO

    from poseapp.boxes import detector_url

    url = detector_url("yolo11n.pt")
    assert url.startswith(f"{mirror.base}/pfx/{GITHUB_ASSETS_REPO}/releases/download/") and url.endswith("/yolo11n.pt")
    body = yolo_checkpoints["yolo11n"].read_bytes()
    mirror.files[urlsplit(url).path] = body
    result = cli("fetch", "yolo11n.pt", "--dir", tmp_path / "det")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "det" / "yolo11n.pt").read_bytes() == body
    assert mirror.requests == [urlsplit(url).path]
    assert cli("fetch", "yolo11n.pt", "--dir", tmp_path / "det").exit_code == 0
    assert len(mirror.requests) == 1  # there already


def test_models_filters():
    rtm = cli("models", "--family", "rtmpose", "--dataset", "coco")
    assert [row.split()[0] for row in rtm.stdout.splitlines()[1:]] == [
        f"rtmpose-{s}_coco-256x192" for s in "tsml"]
    found = cli("models", "--search", "SA-SIMDR")
    assert [row.split()[0] for row in found.stdout.splitlines()[1:]] == ["sa-simdr-w48_coco-256x192"]
    wflw = cli("models", "--dataset", "wflw")
    assert {row.split()[2] for row in wflw.stdout.splitlines()[1:]} == {"regression"}
    (line,) = errors(result := cli("models", "--family", "heatmaps"))
    assert result.exit_code == 2 and "unknown family 'heatmaps'. Did you mean: heatmap" in line


def test_models_info_prints_the_whole_recipe(tmp_path, monkeypatch):
    monkeypatch.setenv("POSEAPP_HOME", str(tmp_path))
    monkeypatch.delenv("POSEAPP_MIRROR", raising=False)
    r = zoo.get_recipe("rtmpose-m_coco-256x192")
    out = cli("models", "info", r.name).stdout
    for text in ("family:        rtmpose", "arch:          rtmpose-m (backbone CSPNeXt-m)", "input:         256x192",
                 f"checkpoint:    {r.filename} (mmpose-1.x layout)", f"sha256:        {r.sha256_prefix}...",
                 "licence:       Apache-2.0", "codec:         simcc (", "flip test:     on",
                 "metrics:       AP 0.746, AP50 0.899, AP75 0.817, AR 0.795, AR50 0.935"):
        assert text in out, text
    import json

    doc = json.loads(cli("models", "info", r.name, "--json").stdout)
    assert doc["metrics"] == r.metrics and doc["url"] == r.url and doc["codec_params"] == r.codec_params
    assert doc["weights"] == {"path": str(tmp_path / r.filename), "url": r.url, "downloaded": "no"}
    sithu = cli("models", "info", "simdr-w48_coco-256x192").stdout
    assert "sha256:        none published (not checked)" in sithu and "Google Drive id" in sithu
    assert "licence:       not stated" in sithu
    (line,) = errors(result := cli("models", "info", "rtmpose-m_coco"))
    assert result.exit_code == 2 and "Did you mean: rtmpose-m_coco-256x192" in line


@needs_shared
def test_a_zoo_name_is_fetched_on_first_use_then_used_from_the_cache(mirror, monkeypatch, tmp_path, caplog,
                                                                      make_checkpoint):
    """README's main command with --pose-model NAME: the first run downloads (saying so) and predicts; the
    second makes no request; --offline on an empty cache is one line naming the fetch command."""
    name = "hrnet-w32_coco-256x192"
    serve(mirror, monkeypatch, name, body=make_checkpoint("coco_hrnet-w32_hm").read_bytes())
    image = sorted((DATA / "coco").glob("*.jpg"))[0]
    args = ["--source", image, "--pose-model", name, "--det-model", DETECTOR, "--no-flip", "--json", "--exist-ok"]
    with caplog.at_level(logging.WARNING, logger="poseapp"):
        first = cli(*args, "--out", tmp_path / "out")
    assert first.exit_code == 0, first.output
    assert f"pose model {name} is not downloaded yet: fetching" in caplog.text
    assert len(mirror.requests) == 1
    assert "instance(s)" in first.stderr and "0 instance(s)" not in first.stderr
    caplog.clear()
    second = cli(*args, "--out", tmp_path / "out", "--offline")
    assert second.exit_code == 0, second.output
    assert len(mirror.requests) == 1 and "not downloaded yet" not in caplog.text

    monkeypatch.setenv("POSEAPP_HOME", str(tmp_path / "empty"))
    result = cli(*args, "--out", tmp_path / "out2", "--offline")
    (line,) = errors(result)
    assert result.exit_code == 2 and "is not in the cache (offline: --offline or POSEAPP_OFFLINE)" in line
    assert f"python infer.py fetch {name}" in line and len(mirror.requests) == 1


def test_fetch_into_a_read_only_folder_is_one_line(mirror, monkeypatch, tmp_path):
    """Writing the .part on a read-only disk is not the network's fault: one line naming the file, no
    traceback from removing the .part it could not write either."""
    import subprocess

    ro = tmp_path / "ro"
    ro.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro", "tmpfs", str(ro)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs (needs root): {done.stderr.strip()}")
    try:
        recipe = serve(mirror, monkeypatch, ZEBRA)
        result = cli("fetch", "--dir", ro, ZEBRA)
    finally:
        subprocess.run(["umount", "-l", str(ro)], check=False)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    (line,) = errors(result)
    assert f"cannot write {ro / recipe.filename}.part: read-only file system" in line
