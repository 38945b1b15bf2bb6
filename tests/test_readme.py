"""Every example in README.md runs as written.

Each fenced block of README is run in a scratch folder, offline and in-process: ``python`` blocks are
executed, every ``python infer.py ...`` line of a shell block goes through click's CliRunner (the
``pip install ... &&`` before it is not run) and must exit 0. ``text`` blocks are not code; ``json`` blocks must parse (a recipe must pass the recipe check). A comment in
README's source above a block marks what cannot run here, and the test says what it skipped and why:

- ``<!-- readme-test: skip "TEXT" (why) -->``: the block's lines containing TEXT (a webcam, a stream, a
  download of everything);
- ``<!-- readme-test: ci (why) -->``: the whole block (the test command itself, which ``.ci/run`` runs).

The world README assumes is built here and printed, one substitution per line (run ``pytest -s`` to see it):
the zoo checkpoints README names are rebuilt from ``../shared/parity/manifests`` under their zoo file
names, in a weights cache whose published hashes are replaced by the rebuilt files' for the test
(monkeypatch); README's detector name (``yolo11n.pt``) is the trained ``../shared/weights/yolov8n-int8.onnx``,
so people are found and the pose model runs; ``photo.jpg``, ``photos/``, ``clip.mp4``, ``val.json`` and the
like are copies of ``assets/`` and ``../shared/data``; the placeholder ``NAME`` is a zoo name.

A block that fails names its line in README. ``test_a_broken_example_fails_naming_its_line`` breaks one on
purpose. ``test_exports_are_never_modules`` checks ``from poseapp import X`` in every import order.
"""
from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import pytest
from click.testing import CliRunner
from conftest import DATA, DETECTOR, ROOT, SHARED, needs_shared

from poseapp.cli import main

README = ROOT / "README.md"
_MARK = re.compile(r"<!--\s*readme-test:\s*(?P<kind>skip|ci)\s*(?:\"(?P<text>[^\"]+)\")?\s*(?P<why>.*?)\s*-->")
_FENCE = re.compile(r"^```(?P<lang>\w*)\s*$")

# README's zoo names -> the parity manifest whose checkpoint stands in for the published weights
_CHECKPOINTS = {
    "hrnet-w32_coco-256x192": "coco_hrnet-w32_hm",
    "rtmpose-m_coco-256x192": "coco_rtmpose-m",
    "res50-rle_mpii-256x256": "mpii_res50_rle",
}
_DETECTOR_NAME = "yolo11n.pt"
_WORDS = {"NAME": "hrnet-w32_coco-256x192"}  # README's placeholders, as whole shell words


@dataclass
class Block:
    """A fenced block of README: its language, its (README line, text) lines and the marks above it."""

    lang: str
    lines: list[tuple[int, str]]
    skips: dict[str, str] = field(default_factory=dict)  # text -> why
    ci: str | None = None  # why the whole block is left to CI

    @property
    def start(self) -> int:
        return self.lines[0][0] if self.lines else 0


def readme_blocks(text: str) -> list[Block]:
    """The fenced blocks of a README's text, with the ``readme-test`` marks written just above each."""
    blocks: list[Block] = []
    marks: list[re.Match] = []
    current: Block | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        fence = _FENCE.match(line)
        if current is not None:
            if fence and not fence["lang"]:
                blocks.append(current)
                current = None
            else:
                current.lines.append((number, line))
            continue
        if fence:
            current = Block(fence["lang"] or "sh", [])
            for m in marks:
                if m["kind"] == "ci":
                    current.ci = m["why"]
                else:
                    current.skips[m["text"]] = m["why"]
            marks = []
        elif (m := _MARK.search(line)) is not None:
            marks.append(m)
        elif line.strip():
            marks = []  # a mark belongs to the block right below it
    assert current is None, "README ends inside a fenced block"
    return blocks


def commands(block: Block) -> list[tuple[int, str]]:
    """The ``python infer.py`` command lines of a shell block, continuation lines joined, the ``pip install
    ... &&`` prefix and trailing comments dropped: (README line, command)."""
    out: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for number, line in block.lines:
        if pending is not None:
            start, text = pending
            line, number = text + " " + line.strip(), start
        if line.rstrip().endswith("\\"):
            pending = (number, line.rstrip()[:-1])
            continue
        pending = None
        command = line.split("&&")[-1].strip()
        if command:
            out.append((number, command))
    return out


def infer_args(command: str) -> list[str]:
    """``python infer.py ARGS  # comment`` -> ARGS as the shell would split them, placeholders replaced."""
    words = shlex.split(command, comments=True)
    assert words[:2] == ["python", "infer.py"], f"not a python infer.py command: {command}"
    return [_WORDS.get(w, w) for w in words[2:]]


# --------------------------------------------------------------------------------------------------
# The world README assumes


@pytest.fixture
def readme_world(tmp_path, monkeypatch, make_checkpoint, capsys):
    """A scratch folder as cwd holding README's example inputs, a weights cache holding its models, offline;
    returns the substitutions made, printed one per line."""
    import poseapp.boxes.yolo
    from poseapp import zoo

    made: list[str] = []
    home = tmp_path / "weights"
    home.mkdir()
    for name, manifest in _CHECKPOINTS.items():
        recipe = zoo.get_recipe(name)
        path = home / recipe.filename
        shutil.copyfile(make_checkpoint(manifest), path)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:8]
        monkeypatch.setitem(zoo._entries(), name, replace(recipe, sha256_prefix=digest))
        made.append(f"{name}: ../shared/parity/manifests/{manifest}.1x.json rebuilt as {path.name} (sha256 {digest}, "
                    f"not {recipe.sha256_prefix})")

    real_fetch = poseapp.boxes.yolo.fetch_detector

    def fetch_detector(name: str, *, cache: Path | None = None, offline: bool | None = None) -> Path:
        return DETECTOR if name == _DETECTOR_NAME else real_fetch(name, cache=cache, offline=offline)

    monkeypatch.setattr(poseapp.boxes.yolo, "fetch_detector", fetch_detector)
    made.append(f"{_DETECTOR_NAME}: {DETECTOR.relative_to(ROOT.parent)} (trained YOLOv8n, int8 ONNX)")

    scratch = tmp_path / "scratch"
    coco, mpii = DATA / "coco", DATA / "mpii"
    copies = {
        "assets/astronaut.jpg": ROOT / "assets" / "astronaut.jpg",
        "photo.jpg": ROOT / "assets" / "astronaut.jpg",
        "photos/000000000785.jpg": coco / "000000000785.jpg",
        "photos/000000196141.jpg": coco / "000000196141.jpg",
        "clip.mp4": DATA / "demo" / "demo.mp4",
        "val.json": coco / "test_coco.json",
        "person_keypoints_val2017.json": coco / "test_coco.json",
        "COCO_val2017_detections_AP_H_56_person.json": coco / "test_coco_det_AP_H_56.json",
        "mpii_val.json": mpii / "test_mpii.json",
        "mpii_gt_val.mat": SHARED / "metrics" / "aux" / "mpii_headboxes_derived.mat",
    }
    for image in sorted(coco.glob("*.jpg")):
        copies[f"val/{image.name}"] = copies[f"val2017/{image.name}"] = image
    for image in sorted(mpii.glob("*.jpg")):
        copies[f"images/{image.name}"] = image
    for image in sorted((DATA / "posetrack18" / "videos" / "000001_mpiinew_test").glob("*.jpg")):
        copies[f"frames/{image.name}"] = image  # a clip's frames
    for name, source in copies.items():
        (scratch / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, scratch / name)
    from fixtures.yolov5.yolov5_file import write_yolov5_checkpoint

    write_yolov5_checkpoint(scratch / "crowdhuman_yolov5m.pt", "v5", objectness_shift=0.2)
    shutil.copyfile(make_checkpoint("sithu_posehrnet-w32", "sithu"), scratch / "posehrnet_w32_256x192.pth")
    made.append("crowdhuman_yolov5m.pt: a seeded YOLOv5m in yolov5's v5.0 checkpoint layout (tests/fixtures/yolov5); "
                "posehrnet_w32_256x192.pth: ../shared/parity/manifests/sithu_posehrnet-w32.json rebuilt")
    for image in ("chelsea", "astronaut"):
        (scratch / "shots").mkdir(exist_ok=True)
        cv2.imwrite(str(scratch / "shots" / f"{image}.png"), cv2.imread(str(ROOT / "assets" / f"{image}.jpg")))
    folders = sorted({n.split("/")[0] + "/" for n in copies if "/" in n} | {"shots/"})
    made.append(f"example inputs in a scratch folder: {', '.join(n for n in copies if '/' not in n)}, "
                f"{', '.join(folders)} (from assets/ and ../shared/data; shots/*.png converted from assets/)")
    made.append(f"placeholders: {', '.join(f'{k} -> {v}' for k, v in _WORDS.items())}")

    monkeypatch.chdir(scratch)
    monkeypatch.setenv("POSEAPP_HOME", str(home))
    monkeypatch.setenv("POSEAPP_OFFLINE", "1")  # a download attempt is a failure
    monkeypatch.delenv("POSEAPP_MIRROR", raising=False)
    with capsys.disabled():
        print("\nREADME substitutions:\n  " + "\n  ".join(made))
    return made


# --------------------------------------------------------------------------------------------------
# Running the blocks


def run_block(block: Block, report: list[str]) -> list[str]:
    """Run one block in the cwd; the failures, each naming its README line. Skips are added to ``report``."""
    if block.lang == "text":
        return []
    if block.lang == "json":  # data, not code: it must parse, and a recipe (it names a codec) must be one
        from poseapp.errors import PoseAppError
        from poseapp.recipes import recipe_from_dict

        try:
            data = json.loads("\n".join(text for _, text in block.lines))
            if isinstance(data, dict) and "codec" in data:
                recipe_from_dict(data, f"README.md:{block.start}")
        except (ValueError, PoseAppError) as e:
            return [f"README.md:{block.start}: the JSON example is wrong: {e}"]
        return []
    if block.ci is not None:
        report.append(f"README.md:{block.start}: block left to CI {block.ci}")
        return []
    if block.lang == "python":
        code = "\n".join(text for _, text in block.lines)
        try:
            exec(compile(code, f"README.md:{block.start}", "exec"), {"__name__": "__readme__"})  # noqa: S102
        except Exception:
            lines = traceback.format_exc().strip().splitlines()
            where = [ln for ln in lines if "README.md:" in ln]
            offset = re.search(r"line (\d+)", where[-1]) if where else None
            line = block.start + int(offset.group(1)) - 1 if offset else block.start
            return [f"README.md:{line}: the Python example failed: {lines[-1]}"]
        return []
    failures = []
    for line, command in commands(block):
        skipped = [(text, why) for text, why in block.skips.items() if text in command]
        if skipped:
            report.append(f"README.md:{line}: skipped `{command.split('#')[0].strip()}` {skipped[0][1]}")
            continue
        if not command.startswith("python infer.py"):
            failures.append(f"README.md:{line}: not a command this test knows how to run: {command}")
            continue
        result = CliRunner().invoke(main, infer_args(command))
        if result.exit_code != 0:
            tail = " | ".join(result.output.strip().splitlines()[-3:])
            failures.append(f"README.md:{line}: `{command.split('#')[0].strip()}` exited {result.exit_code}: {tail}")
    return failures


@needs_shared
def test_every_readme_example_runs(readme_world, capsys):
    blocks = readme_blocks(README.read_text(encoding="utf-8"))
    report: list[str] = []
    failures = [f for block in blocks for f in run_block(block, report)]
    with capsys.disabled():
        print("README blocks not run here:\n  " + "\n  ".join(report))
    assert failures == []
    # what ran: README's first command (the main job) among them, and what it wrote
    first = commands(blocks[0])[0][1]
    assert infer_args(first) == ["--source", "assets/astronaut.jpg"]
    assert cv2.imread("runs/predict/astronaut.jpg").shape == cv2.imread("assets/astronaut.jpg").shape
    ran = [c for b in blocks if b.lang == "sh" and b.ci is None for _, c in commands(b)
           if not any(t in c for t in b.skips)]
    assert len(ran) >= 15 and len(report) == 9, report  # CI, 4 camera/stream/fetch-all, 4 --ray lines
    saved = [json.loads(p.read_text())["images"] for p in sorted(Path("runs").glob("predict*/predictions.json"))]
    (photos,) = [records for records in saved if len(records) == 2]  # --source photos/ --json
    assert all(r["instances"] for r in photos)  # the trained detector found the people, the pose model ran
    api = json.loads(Path("runs/api/predictions.json").read_text())["images"]  # run_predict(PredictOptions(...))
    assert [r["image"] for r in api] == [r["image"] for r in photos] and all(r["instances"] for r in api)


def test_readme_blocks_are_parsed_with_their_marks():
    blocks = readme_blocks(README.read_text(encoding="utf-8"))
    assert [b.lang for b in blocks].count("python") == 1
    test_block = next(b for b in blocks if b.ci is not None)
    assert commands(test_block) == [(test_block.start, "python -m pytest -q")]
    use = next(b for b in blocks if b.skips)
    assert set(use.skips) == {"webcam:0", "rtsp://"}
    eval_block = next(b for b in blocks if any("--headboxes" in c for _, c in commands(b)))
    first = commands(eval_block)[0][1]  # a continued line, joined
    assert "--boxes COCO_val2017_detections_AP_H_56_person.json --json" in first and "\\" not in first


def test_a_broken_example_fails_naming_its_line(tmp_path, monkeypatch):
    """The runner on a README with one broken line per kind of block: each failure names its line."""
    monkeypatch.chdir(tmp_path)
    text = textwrap.dedent("""\
        # demo

        ```
        python infer.py models --dataset coco
        python infer.py --source missing.jpg --det-model none
        ```

        <!-- readme-test: skip "webcam:0" (no camera) -->
        ```
        python infer.py --source webcam:0
        ```

        ```python
        import poseapp
        x = 1
        poseapp.no_such_function()
        ```
        """)
    report: list[str] = []
    failures = [f for block in readme_blocks(text) for f in run_block(block, report)]
    assert len(failures) == 2, failures
    assert failures[0].startswith("README.md:5: `python infer.py --source missing.jpg --det-model none` exited 2")
    assert failures[1].startswith("README.md:16: the Python example failed: AttributeError")
    assert report == ["README.md:10: skipped `python infer.py --source webcam:0` (no camera)"]


def test_exports_are_never_modules():
    """``from poseapp import X`` gives a function or class for every X in __all__, whether the submodules
    were imported before (the order that broke ``draw``) or after."""
    code = textwrap.dedent("""
        import importlib, inspect, pkgutil, sys
        import poseapp
        first = {name: getattr(poseapp, name) for name in poseapp.__all__} if sys.argv[1] == "names-first" else {}
        for info in pkgutil.walk_packages(poseapp.__path__, "poseapp."):
            importlib.import_module(info.name)
        bad = []
        for name in poseapp.__all__:
            namespace = {}
            exec(f"from poseapp import {name} as obj", namespace)
            obj = namespace["obj"]
            if not (inspect.isfunction(inspect.unwrap(obj)) or inspect.isclass(obj)) or first.get(name, obj) is not obj:
                bad.append(f"{name}: {obj!r}")
        print(len(poseapp.__all__), bad)
        """)
    for order in ("modules-first", "names-first"):
        run = subprocess.run([sys.executable, "-c", code, order], cwd=ROOT, capture_output=True, text=True,
                             timeout=300)
        assert run.returncode == 0, run.stderr[-2000:]
        assert run.stdout.strip().endswith("[]"), (order, run.stdout)
