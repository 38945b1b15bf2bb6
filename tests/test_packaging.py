"""``pip install .`` gives what pyproject.toml promises: the whole ``poseapp`` package with its data files, the
``poseapp`` command (the same as ``python infer.py``), requirements.txt as the dependencies, AGPL-3.0.

A wheel is built once, from a copy of the project in a temp folder (so no ``build/`` or ``*.egg-info`` lands in
the checkout), with the running interpreter's setuptools (``--no-build-isolation``: no network). Without a
setuptools new enough for pyproject.toml's ``[build-system]`` the tests skip, saying so. The built wheel is
then installed (``--no-deps``) into a throwaway venv that sees the running environment's packages (torch and
the rest) and its ``poseapp`` command is run from outside the checkout.
"""
from __future__ import annotations

import configparser
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import venv
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "poseapp"
ZOO_NAME = "hrnet-w32_coco-256x192"  # a zoo row `poseapp models` must list

# Not copied into the build folder: VCS, environments, caches and earlier build output.
_NEVER_COPIED = {".git", ".venv", "venv", "__pycache__", ".pytest_cache", ".hypothesis", ".ruff_cache",
                 ".mypy_cache", "build", "dist"}
# Folders whose contents are local state (the weights cache, predictions): only their README travels, plus a
# planted file each, so the wheel is seen to leave them out.
_STATE = {"weights": "planted.pth", "runs": "predict/planted.jpg"}


def _min_setuptools() -> tuple[int, ...]:
    """The setuptools version pyproject.toml's [build-system] requires (``setuptools>=X.Y``)."""
    m = re.search(r'"setuptools\s*>=\s*([0-9.]+)', (ROOT / "pyproject.toml").read_text())
    assert m, "pyproject.toml's [build-system] requires no setuptools>=X"
    return tuple(int(p) for p in m.group(1).split("."))


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def _requirements() -> list[str]:
    """requirements.txt's requirements, whole-line and trailing comments dropped, spaces removed."""
    out = []
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = re.sub(r"(^|\s)#.*", "", line).strip()
        if line:
            assert not line.startswith("-"), f"requirements.txt: {line!r} is a pip option setuptools cannot read"
            out.append(line.replace(" ", ""))
    return out


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement).group(0)).lower()


def _package_files() -> set[str]:
    """Every file of the source package as a wheel path (``poseapp/...``): modules and data files alike;
    bytecode and editor leftovers (dot files, ``~`` backups) aside."""
    return {p.relative_to(ROOT).as_posix() for p in PACKAGE.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")
            and not p.name.startswith(".") and not p.name.endswith("~")}


def _ignore(folder: str, names: list[str]) -> set[str]:
    here = Path(folder)
    skipped = {n for n in names if n in _NEVER_COPIED or n.endswith(".egg-info")}
    if here.parent == ROOT and here.name in _STATE:
        skipped |= {n for n in names if n != "README.md"}
    return skipped


def _build_output() -> set[str]:
    """What a build in the checkout would leave there (git-ignored, so only this test would notice)."""
    return {p.name for p in ROOT.iterdir() if p.name in ("build", "dist") or p.name.endswith(".egg-info")}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    """Build the wheel once: its path, file names, dist-info folder, METADATA, entry_points.txt, licences."""
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("setuptools is not installed in this interpreter (a Python >= 3.12 venv has none; torch "
                    "normally pulls it in): pip install 'setuptools>=%s' to run the packaging tests"
                    % ".".join(map(str, _min_setuptools())))
    have = importlib.metadata.version("setuptools")
    if _version_tuple(have) < _min_setuptools():
        pytest.skip(f"setuptools {have} is older than pyproject.toml's build requirement setuptools>="
                    f"{'.'.join(map(str, _min_setuptools()))} (SPDX license); pip install -U setuptools")
    if importlib.util.find_spec("pip") is None:
        pytest.skip("pip is not installed in this interpreter: it builds the wheel")

    before = _build_output()
    src = tmp_path_factory.mktemp("pkg") / "src"
    shutil.copytree(ROOT, src, ignore=_ignore, symlinks=True)
    for folder, planted in _STATE.items():
        (src / folder / planted).parent.mkdir(parents=True, exist_ok=True)
        (src / folder / planted).write_bytes(b"not a package file")
    out = src.parent / "wheelhouse"
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
           "--disable-pip-version-check", "-q", "-w", str(out), "."]
    result = subprocess.run(cmd, cwd=src, capture_output=True, text=True, timeout=180, env=_clean_env())
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}"
    wheels = list(out.glob("poseapp-*.whl"))
    assert len(wheels) == 1, f"expected one poseapp wheel in {out}, got {wheels}"
    assert _build_output() == before, "building the wheel left build output in the checkout"

    with zipfile.ZipFile(wheels[0]) as z:
        names = set(z.namelist())
        dist_info = {n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info")}
        assert len(dist_info) == 1, dist_info
        dist_info = dist_info.pop()
        read = {n: z.read(f"{dist_info}/{n}").decode() for n in ("METADATA", "entry_points.txt")}
        licenses = {n: z.read(n) for n in names if n.startswith(f"{dist_info}/licenses/")}
    return {"wheel": wheels[0], "names": names, "dist_info": dist_info, "licenses": licenses, **read}


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment without anything that would put the checkout (or another poseapp) on sys.path."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "PIP_USER",
                        "PIP_REQUIRE_VIRTUALENV", "PIP_TARGET", "PIP_PREFIX")}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONDONTWRITEBYTECODE="1", **extra)
    return env


def test_wheel_has_every_module_and_data_file(built):
    missing = sorted(_package_files() - built["names"])
    assert not missing, (f"the wheel lacks {missing}: a data file poseapp reads must be listed under "
                         "[tool.setuptools.package-data] in pyproject.toml (a new subpackage needs an __init__.py)")
    # the data files poseapp opens beside its modules, named so that a too-narrow glob is caught even if the
    # source listing above were wrong
    assert "poseapp/zoo.json" in built["names"]
    assert {f"poseapp/keypoints/data/{p.name}" for p in (PACKAGE / "keypoints" / "data").glob("*.json")} <= \
        built["names"]


def test_wheel_holds_only_the_package(built):
    tops = {n.split("/")[0] for n in built["names"]}
    assert tops == {"poseapp", built["dist_info"]}, f"the wheel installs more than poseapp: {sorted(tops)}"
    assert not [n for n in built["names"] if re.search(r"(^|/)(tests|weights|runs|bench|assets)/", n)]
    assert not [n for n in built["names"] if n.endswith((".pyc", ".pth", ".pt", ".onnx", ".jpg"))]


def test_console_script_is_what_infer_py_runs(built):
    entry_points = configparser.ConfigParser()
    entry_points.read_string(built["entry_points.txt"])
    assert dict(entry_points["console_scripts"]) == {"poseapp": "poseapp.cli:main"}
    infer = (ROOT / "infer.py").read_text()
    assert "from poseapp.cli import main" in infer and re.search(r"^\s+main\(\)\s*$", infer, re.M), \
        "infer.py no longer calls poseapp.cli:main(): update [project.scripts] in pyproject.toml to match"


def test_metadata_lists_requirements_and_license(built):
    meta = Parser().parsestr(built["METADATA"])
    assert meta["Name"] == "poseapp"
    init = (PACKAGE / "__init__.py").read_text()
    assert meta["Version"] == re.search(r'^__version__ = "([^"]+)"', init, re.M).group(1)
    assert meta["Requires-Python"] == ">=3.10"
    requires = [r.replace(" ", "") for r in meta.get_all("Requires-Dist") or []]

    def bounds(r: str) -> tuple[str, frozenset]:  # the wheel writes a range's bounds in its own order: <5.1,>=5.0
        raw = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", r).group(0)
        return _name(r), frozenset(r[len(raw):].split(","))

    assert [bounds(r) for r in requires] == [bounds(r) for r in _requirements()], \
        "the wheel's Requires-Dist is not requirements.txt"
    assert [_name(r) for r in requires] == [_name(r) for r in _requirements()]
    assert "AGPL-3.0-only" in (meta["License-Expression"] or meta["License"] or ""), \
        f"License-Expression {meta['License-Expression']!r}, License {meta['License']!r}"
    license_text = (ROOT / "LICENSE").read_bytes()
    assert license_text.lstrip().startswith(b"GNU AFFERO GENERAL PUBLIC LICENSE\n                       "
                                            b"Version 3, 19 November 2007")
    assert b"How to Apply These Terms to Your New Programs" in license_text
    assert list(built["licenses"].values()) == [license_text], "the wheel does not ship LICENSE as is"


@pytest.fixture(scope="module")
def installed(built, tmp_path_factory) -> Path:
    """A throwaway venv with the wheel installed (--no-deps); its bin folder. The venv sees the running
    environment's packages through a .pth file: ``--system-site-packages`` would only give the base
    interpreter's, not those of the venv the tests run in (where requirements.txt was installed)."""
    root = tmp_path_factory.mktemp("venv")
    env_dir = root / "env"
    venv.EnvBuilder(with_pip=False, symlinks=os.name != "nt").create(env_dir)
    bindir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    python = bindir / ("python.exe" if os.name == "nt" else "python")
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    # sys.path of a fresh running interpreter (no pytest insertions), less what the venv has of its own (the
    # standard library) and the checkout's root (an editable install puts it there): the poseapp imported
    # must be the wheel's
    outer, inner = (_sys_path(exe, root) for exe in (sys.executable, python))
    extra = [p for p in outer if p not in inner and Path(p).is_dir() and (Path(p) / "poseapp").resolve() != PACKAGE]
    (Path(purelib) / "_outer_environment.pth").write_text("".join(f"{p}\n" for p in extra))
    cmd = [str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(built["wheel"])]
    result = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=180, env=_clean_env())
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}"
    where = subprocess.run([str(python), "-c", "import poseapp; print(poseapp.__file__)"], cwd=root,
                           capture_output=True, text=True, env=_clean_env())
    assert Path(where.stdout.strip()).is_relative_to(env_dir), f"poseapp imported from {where.stdout}{where.stderr}"
    return bindir


def _sys_path(python: str | Path, cwd: Path) -> list[str]:
    code = "import json, sys; print(json.dumps(sys.path[1:]))"  # [0]: the cwd
    return json.loads(subprocess.run([str(python), "-c", code], cwd=cwd, capture_output=True, text=True,
                                     check=True, env=_clean_env()).stdout)


def _run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120,
                          env=_clean_env(POSEAPP_OFFLINE="1", POSEAPP_HOME=str(cwd / "cache"), **env))


def test_installed_command_runs(installed, tmp_path):
    poseapp = str(installed / "poseapp")
    shown = _run([poseapp, "--help"], tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "Usage: poseapp" in shown.stdout
    reference = _run([sys.executable, str(ROOT / "infer.py"), "--help"], tmp_path)
    assert reference.returncode == 0, reference.stderr
    assert shown.stdout == reference.stdout.replace("Usage: infer.py", "Usage: poseapp"), \
        "`poseapp --help` differs from `python infer.py --help`"

    models = _run([poseapp, "models"], tmp_path)
    assert models.returncode == 0, models.stderr
    assert ZOO_NAME in models.stdout, models.stdout[-2000:]

    version = _run([poseapp, "--version"], tmp_path)
    assert version.returncode == 0 and re.search(r"\d+\.\d+", version.stdout), version.stdout + version.stderr


def test_installed_package_reads_its_data_files(installed, tmp_path):
    """The keypoint tables and the zoo load from the installed copy (not from the checkout)."""
    python = str(installed / "python")
    code = ("import poseapp, poseapp.keypoints as k, poseapp.zoo as z; from pathlib import Path; "
            "print(Path(poseapp.__file__).parent); print(len(k.available())); "
            "print(len([k.get_keypoint_set(n) for n in k.available()]), len(z.list_recipes()))")
    listed = [p.stem for p in (PACKAGE / "keypoints" / "data").glob("*.json")]
    result = _run([python, "-c", code], tmp_path)
    assert result.returncode == 0, result.stderr
    where, count, loaded = result.stdout.split("\n")[:3]
    assert Path(where).is_relative_to(installed.parent)
    assert int(count) == len(listed) and loaded.split()[0] == count and int(loaded.split()[1]) > 0


def test_installed_package_caches_weights_outside_site_packages(installed, tmp_path):
    """Installed, the weights cache is $XDG_CACHE_HOME/poseapp (not site-packages/weights); POSEAPP_HOME wins."""
    code = "from poseapp.hub import cache_dir; print(cache_dir())"
    env = {k: v for k, v in os.environ.items() if k not in {"POSEAPP_HOME", "PYTHONPATH"}}
    for extra, expected in [({"XDG_CACHE_HOME": str(tmp_path / "xdg")}, tmp_path / "xdg" / "poseapp"),
                            ({"POSEAPP_HOME": str(tmp_path / "home")}, tmp_path / "home")]:
        run = subprocess.run([str(installed / "python"), "-c", code], cwd=tmp_path, capture_output=True, text=True,
                             env={**env, **extra}, timeout=60)
        assert run.returncode == 0, run.stderr
        assert Path(run.stdout.strip()) == expected
