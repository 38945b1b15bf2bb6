"""The zoo's commands: ``python infer.py models [info NAME]`` and ``python infer.py fetch NAME...``.

Parsing, printing and exit codes only (as all of poseapp.cli): the table is poseapp.zoo, downloads are
poseapp.hub; detector weights (ultralytics' release assets) are vetted by poseapp.boxes.yolo.fetch_detector.
"""
from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable

import click

from poseapp.cli.common import configure_logging, fail, offline_from_env

FAMILIES = ("heatmap", "regression", "rle", "simcc", "rtmpose", "simdr")


# ----------------------------------------------------------------------------------------- models

@click.group(invoke_without_command=True)
@click.option("--dataset", default=None, help="Only models of this data set (coco, mpii, ap10k, wflw, ...).")
@click.option("--family", default=None, help=f"Only this family: {', '.join(FAMILIES)}.")
@click.option("--search", default=None, metavar="TEXT",
              help="Only models whose name, backbone, data set or table contains TEXT (any case).")
@click.pass_context
def models(ctx: click.Context, dataset: str | None, family: str | None, search: str | None) -> None:
    """List the model zoo: name, data set, family, backbone, input (h x w), published metric, default boxes.

    \b
      python infer.py models --dataset coco --family rtmpose
      python infer.py models --search hrnet-w48
      python infer.py models info hrnet-w32_coco-256x192     the whole recipe, URL, hash, downloaded?

    Rows without public weights are listed last with the reason; they cannot be fetched.
    """
    if ctx.invoked_subcommand is not None:
        return
    from poseapp.errors import PoseAppError

    try:
        rows = _listed(dataset, family, search)
    except PoseAppError as e:
        fail(str(e), False)
    table = [("name", "dataset", "family", "backbone", "input", "metric", "boxes")]
    for entry in rows:
        table.append(_row(entry))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    for row in table:
        click.echo(("  ".join(f"{cell:<{w}}" for cell, w in zip(row, widths)) + f"  {row[-1]}").rstrip())
    missing = sum(1 for entry in rows if _unavailable(entry))
    note = f" ({missing} without public weights)" if missing else ""
    click.echo(f"{len(rows)} model(s){note}", err=True)


def _listed(dataset: str | None, family: str | None, search: str | None) -> list[Any]:
    """The zoo rows (Recipes, then Unavailable rows) passing the filters; unknown filter values suggest."""
    from poseapp.errors import suggest
    from poseapp.zoo import list_recipes, list_unavailable

    rows: list[Any] = [*list_recipes(), *list_unavailable()]
    if dataset is not None:
        dataset = dataset.lower()  # names are matched case-insensitively, as model names are
        known = sorted({r.dataset for r in rows})
        if dataset not in known:
            raise suggest(dataset, known, "data set")
        rows = [r for r in rows if r.dataset == dataset]
    if family is not None:
        family = family.lower()
        if family not in FAMILIES:
            raise suggest(family, FAMILIES, "family")
        rows = [r for r in rows if getattr(r, "family", None) == family]
    if search is not None:
        text = search.lower()
        rows = [r for r in rows if any(text in str(v).lower() for v in (r.name, r.backbone, r.dataset, r.table))]
    return rows


def _row(entry: Any) -> tuple[str, ...]:
    headline = entry.headline
    metric = f"{headline[0]} {headline[1]}" if headline else ""
    size = _hxw(entry.input_size) if entry.input_size else "?"
    if _unavailable(entry):
        return entry.name, entry.dataset, "-", entry.backbone, size, metric, f"no public weights: {entry.unavailable}"
    return entry.name, entry.dataset, entry.family, entry.backbone, size, metric, _boxes(entry.dataset)


def _unavailable(entry: Any) -> bool:
    """Whether a zoo row has no public weights (a zoo.Unavailable, not a Recipe)."""
    from poseapp.zoo import Unavailable

    return isinstance(entry, Unavailable)


def _hxw(size: tuple[int, int]) -> str:
    """A (w, h) size as the zoo names write it: ``256x192`` is 256 high, 192 wide."""
    return f"{size[1]}x{size[0]}"


def _boxes(dataset: str) -> str:
    from poseapp.boxes import box_rule_for
    from poseapp.errors import UnknownNameError

    try:
        return box_rule_for(dataset).summary
    except UnknownNameError:  # a data set poseapp.boxes' table lacks
        return "?"


@models.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the recipe as JSON.")
def info(name: str, as_json: bool) -> None:
    """Everything about one model: recipe, checkpoint URL, hash, licence, metrics, and whether it is downloaded."""
    from poseapp.errors import PoseAppError
    from poseapp.zoo import get_entry

    try:
        entry = get_entry(name)
        weights = None if _unavailable(entry) else _weights_state(entry)
    except PoseAppError as e:
        fail(str(e), False)
    if as_json:
        doc = asdict(entry)
        if weights is not None:
            doc["weights"] = weights
        click.echo(json.dumps(doc, indent=2, ensure_ascii=False))
        return
    for key, value in _info_lines(entry, weights):
        click.echo(f"{key + ':':<15}{value}")


def _weights_state(recipe) -> dict[str, Any]:
    """Where the recipe's checkpoint is (or would be) cached, the URL used after POSEAPP_MIRROR, and whether
    a verified copy is there (no network)."""
    from poseapp import hub

    path = hub.cache_dir() / recipe.filename
    cached = hub.cached_path(recipe.filename, recipe.sha256_prefix)
    if cached is not None:
        state = "yes (sha256 verified)" if recipe.sha256_prefix else "yes (no published hash to check)"
    elif path.exists():
        state = "no: the file there does not match the published sha256 (fetch replaces it)"
    else:
        state = "no"
    return {"path": str(path), "url": hub.mirror_url(recipe.url), "downloaded": state}


def _info_lines(entry: Any, weights: dict[str, Any] | None) -> Iterable[tuple[str, str]]:
    from poseapp.keypoints import get_keypoint_set

    metrics = ", ".join(f"{k} {v}" for k, v in entry.metrics.items() if v is not None)
    yield "name", entry.name
    yield "dataset", entry.dataset
    if weights is None:  # zoo.Unavailable
        yield "model", f"{entry.description} ({entry.backbone})"
        if entry.input_size:
            yield "input", f"{_hxw(entry.input_size)} (height x width)"
        yield "weights", f"none: {entry.unavailable}"
        yield "source", entry.source
        yield "table", entry.table
        yield "evaluated on", entry.eval_set or "?"
        yield "metrics", metrics
        return
    r = entry
    kset = get_keypoint_set(r.keypoint_set)
    start, stop = r.keypoint_range or (0, len(kset.names))
    names = kset.names[start:stop]
    yield "keypoints", f"{len(names)} of {kset.name} ({', '.join(names[:4])}{', ...' if len(names) > 4 else ''})"
    if r.keypoint_range is not None:
        yield "category", f"{r.category}: channels {start}..{stop - 1} of the network's {r.num_keypoints} are decoded"
    yield "family", r.family
    yield "arch", f"{r.arch} (backbone {r.backbone})"
    yield "input", f"{_hxw(r.input_size)} (height x width)"
    if r.heatmap_size:
        yield "heatmap", _hxw(r.heatmap_size)
    params = ", ".join(f"{k}={v}" for k, v in r.codec_params.items())
    yield "codec", f"{r.codec}" + (f" ({params})" if params else "")
    yield "crop", f"{r.warp} warp, box padding {r.bbox_padding}"
    yield "flip test", _flip(r)
    yield "mean / std", f"{list(r.mean)} / {list(r.std)} (RGB, 0-255)"
    yield "boxes", _boxes(r.dataset)
    yield "checkpoint", f"{r.filename} ({r.layout} layout)"
    yield "url", weights["url"] + (f" (Google Drive id {r.gdrive_id})" if r.gdrive_id else "")
    yield "sha256", f"{r.sha256_prefix}..." if r.sha256_prefix else "none published (not checked)"
    yield "licence", r.licence
    yield "cached at", weights["path"]
    yield "downloaded", weights["downloaded"]
    yield "source", r.source
    yield "table", r.table
    yield "evaluated on", r.eval_set or "?"
    yield "metrics", metrics


def _flip(r) -> str:
    if not r.flip_test:
        return "off"
    if r.family == "heatmap":
        return f"on (shift_heatmap={r.shift_heatmap})"
    if r.family in ("regression", "rle"):
        return f"on (shift_coords={r.shift_coords})"
    return "on"


# ----------------------------------------------------------------------------------------- fetch

@click.command()
@click.argument("names", nargs=-1)
@click.option("--all", "fetch_all", is_flag=True, help="Every zoo model with public weights.")
@click.option("--dataset", default=None, help="Every zoo model of this data set.")
@click.option("--dir", "folder", default=None, type=click.Path(file_okay=False),
              help="Download into this folder instead of the cache (weights/ or $POSEAPP_HOME).")
@click.option("--dry-run", is_flag=True, help="Print what would be downloaded, download nothing.")
@click.option("--offline", is_flag=True, help="No network (as POSEAPP_OFFLINE=1): only check the cache.")
@click.option("--verbose", "-v", is_flag=True, help="Show tracebacks on errors.")
def fetch(names: tuple[str, ...], fetch_all: bool, dataset: str | None, folder: str | None, dry_run: bool,
          offline: bool, verbose: bool) -> None:
    """Download zoo weights (sha256-checked, resumable) or ultralytics detector weights (yolo11n.pt ...;
    ultralytics publishes no hash: a download that is not a checkpoint of allowed model classes is deleted).

    \b
      python infer.py fetch hrnet-w32_coco-256x192 yolo11n.pt
      python infer.py fetch --dataset ap10k --dry-run
      python infer.py fetch --all --dir /mnt/models       then POSEAPP_HOME=/mnt/models

    Prints each file's path. POSEAPP_MIRROR=https://host/prefix downloads from a mirror instead. A file
    already there and verified is not downloaded again. Exit code 1 if some downloads failed (the others
    are kept), 2 for an unknown name.
    """
    from poseapp.errors import PoseAppError

    configure_logging(verbose)
    offline = offline or offline_from_env()
    try:
        if not (names or fetch_all or dataset):
            raise PoseAppError("name the models to fetch (python infer.py models), or pass --all or --dataset NAME")
        jobs = _fetch_jobs(names, fetch_all, dataset)
    except PoseAppError as e:
        fail(str(e), verbose)
    cache = Path(folder).expanduser() if folder else None
    failed: list[tuple[str, str]] = []
    for name, recipe in jobs:
        try:
            if dry_run:
                click.echo(_dry_run_line(name, recipe, cache))
            else:
                click.echo(_fetch_one(name, recipe, cache, offline))
        except PoseAppError as e:
            if verbose:
                import traceback

                traceback.print_exc()
            failed.append((name, str(e)))
            click.secho(f"error: {e}", fg="red", err=True)
    if dry_run:
        click.echo(f"{len(jobs)} file(s) checked (dry run: nothing downloaded)", err=True)
    elif len(jobs) > 1:
        click.echo(f"{len(jobs) - len(failed)} of {len(jobs)} fetched", err=True)
    if failed and len(jobs) > 1:
        click.secho(f"{len(failed)} failed:", fg="yellow", err=True)
        for name, why in failed:
            click.echo(f"  {name}: {why}", err=True)
    if failed:
        sys.exit(1)


def _fetch_jobs(names: Iterable[str], fetch_all: bool, dataset: str | None) -> list[tuple[str, Any]]:
    """(name, Recipe or None for a detector) per download, in order, without duplicates. Every name is
    checked before anything is downloaded."""
    from poseapp.boxes.yolo import is_detector_name
    from poseapp.errors import PoseAppError, suggest
    from poseapp.zoo import get_entry, get_recipe, list_recipes

    jobs: dict[str, Any] = {}
    if fetch_all:
        jobs.update((r.name, r) for r in list_recipes())
    if dataset is not None:
        dataset = dataset.lower()
        chosen = [r for r in list_recipes() if r.dataset == dataset]
        if not chosen:
            raise suggest(dataset, sorted({r.dataset for r in list_recipes()}), "data set")
        jobs.update((r.name, r) for r in chosen)
    from poseapp.boxes.yolov5.detector import classic_detector_name

    for name in names:
        if is_detector_name(name) or classic_detector_name(name) is not None:
            jobs[name] = None
            continue
        try:
            entry = get_entry(name)
        except PoseAppError as e:
            raise type(e)(f"{e} (or a detector name ultralytics knows, e.g. yolo11n.pt)") from None
        recipe = get_recipe(entry.name)  # a row without public weights raises, saying why
        jobs[recipe.name] = recipe
    return list(jobs.items())


def _fetch_one(name: str, recipe, cache: Path | None, offline: bool) -> Path:
    from poseapp.create import fetch_weights
    from poseapp.boxes.yolo import fetch_detector

    from poseapp.boxes.yolov5.detector import classic_detector_name, fetch_classic_detector

    if recipe is None and classic_detector_name(name) is not None:
        return fetch_classic_detector(classic_detector_name(name), cache=cache, offline=offline)
    if recipe is None:
        return fetch_detector(name, cache=cache, offline=offline)
    return fetch_weights(recipe, cache=cache, offline=offline)


def _dry_run_line(name: str, recipe, cache: Path | None) -> str:
    from poseapp import hub
    from poseapp.boxes.yolo import detector_url

    from poseapp.boxes.yolov5.detector import CLASSIC_DETECTORS, classic_detector_name

    folder = cache if cache is not None else hub.cache_dir()
    classic = classic_detector_name(name)
    if classic is not None:
        url, filename = CLASSIC_DETECTORS[classic]
        path, url = folder / filename, hub.mirror_url(url)
        if path.exists():
            return f"{name}: already in {path} (nothing to do)"
        return f"{name}: would download {url} -> {path} (no published hash: vetted by reading it weights-only)"
    if recipe is None:
        path = folder / name
        there = path.exists()
        url = detector_url(name)
    else:
        path = folder / recipe.filename
        there = hub.cached_path(recipe.filename, recipe.sha256_prefix, cache=cache) is not None
        url = hub.mirror_url(recipe.url)
    if there:
        return f"{name}: already in {path} (nothing to do)"
    if recipe is None:
        from poseapp.boxes.yolo import detector_sha256

        digest = detector_sha256(name)
        check = f"sha256 {digest}..." if digest else "no published hash: vetted by the checkpoint allow-list"
    else:
        check = f"sha256 {recipe.sha256_prefix}..." if recipe.sha256_prefix else "no published hash"
    return f"{name}: would download {url} -> {path} ({check})"
