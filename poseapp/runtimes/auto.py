"""``backend="auto"``: the fastest backend for this model on this machine, measured once and remembered.

The probe runs each candidate runtime on a few batches of random crops at the model's input size and takes
the median crops/s; a candidate within 5% of the fastest loses to ONNX Runtime when ONNX Runtime is that
close (it starts fastest and has the fewest surprises). The choice is kept in ``backends.json`` in the
weights cache, keyed by the CPU, the thread count, the precision, the packages' versions and the network's
shape, so a new CPU, a new package or another model is measured afresh.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Callable

from poseapp.runtimes.base import Runtime, cpu_name

log = logging.getLogger(__name__)

TIE = 0.05
PREFERRED = "onnxruntime"
PROBE_BATCH, PROBE_CALLS = 4, 3


def _versions() -> str:
    from importlib import metadata

    parts = []
    for package in ("torch", "onnxruntime", "openvino"):
        try:
            parts.append(f"{package}={metadata.version(package)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{package}=none")
    return ",".join(parts)


def probe_key(network: str, *, threads: int, precision: str, device: str) -> str:
    return f"{cpu_name()}|{device}|threads={threads}|{precision}|{_versions()}|{network}"


def measure(runtime: Runtime, input_size: tuple[int, int], *, batch: int = PROBE_BATCH, calls: int = PROBE_CALLS) -> float:
    """Median crops/s of ``runtime`` on ``calls`` batches of random crops (one untimed call first)."""
    import numpy as np
    import torch

    w, h = input_size
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((batch, 3, h, w), dtype=np.float32)).to(runtime.device)
    runtime(x)
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        runtime(x)
        if runtime.device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return batch / float(np.median(times))


def pick(speeds: dict[str, float]) -> str:
    """The fastest name, ONNX Runtime winning a tie within 5%."""
    best = max(speeds, key=speeds.get)
    if PREFERRED in speeds and speeds[PREFERRED] >= (1 - TIE) * speeds[best]:
        return PREFERRED
    return best


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write(path: Path, data: dict) -> None:
    from poseapp.errors import PoseAppError
    from poseapp.sinks.files import atomic_write

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda f: f.write(json.dumps(data, indent=1, sort_keys=True).encode()))
    except (OSError, PoseAppError) as e:  # a read-only cache: measured again next time
        log.warning("cannot remember the backend choice in %s (%s)", path, e)


def choose(candidates: dict[str, Callable[[], Runtime]], key: str, input_size: tuple[int, int], *,
           cache: Path | None = None) -> Runtime:
    """The runtime of the fastest candidate (``name -> factory``), from the remembered choice when ``key`` has
    one, else measured now. A candidate that fails to build is left out (the first failure is raised when
    none builds)."""
    from poseapp.hub import cache_dir

    path = Path(cache) if cache is not None else cache_dir() / "backends.json"
    known = _read(path).get(key)
    if isinstance(known, dict) and known.get("choice") in candidates:
        try:
            runtime = candidates[known["choice"]]()
        except Exception as e:  # noqa: BLE001 - it no longer builds: measured again below
            log.warning("backend auto: %s, chosen before, fails now (%s): measuring again", known["choice"], e)
        else:
            speeds = known.get("crops_per_s")
            shown = ", ".join(f"{k} {v}" for k, v in speeds.items()) if isinstance(speeds, dict) else "?"
            log.info("backend auto: %s (measured before on this machine: %s crops/s)", known["choice"], shown)
            return runtime
    runtimes, speeds, failure = {}, {}, None
    for name, factory in candidates.items():
        try:
            runtimes[name] = factory()
            speeds[name] = measure(runtimes[name], input_size)
        except Exception as e:  # noqa: BLE001 - a backend that cannot take this model is not a candidate
            failure = failure or e
            runtimes.pop(name, None)
            log.warning("backend auto: %s left out (%s)", name, e)
    if not runtimes:
        raise failure
    choice = pick(speeds)
    log.info("backend auto: %s (%s crops/s at batch %d; measured once, kept in %s)", choice,
             ", ".join(f"{k} {v:.1f}" for k, v in speeds.items()), PROBE_BATCH, path)
    data = _read(path)
    data[key] = {"choice": choice, "crops_per_s": {k: round(v, 2) for k, v in speeds.items()},
                 "measured": time.strftime("%Y-%m-%dT%H:%M:%S")}
    _write(path, data)
    return runtimes[choice]
