"""The weights cache: where it is, what it holds (verified by sha256, trusted through stamps), and ``fetch``,
which downloads only what is missing."""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Callable

from poseapp.hub.downloads import DownloadError, ProgressFn, download_verified, is_offline, normalise_prefix, sha256_of

log = logging.getLogger(__name__)

_STAMP = ".sha256"


def cache_dir() -> Path:
    """Where fetched files live: ``$POSEAPP_HOME`` if set; else, in a checkout, ``<repo root>/weights``; else
    (poseapp installed with pip, where beside the package is site-packages) ``$XDG_CACHE_HOME/poseapp``, by
    default ``~/.cache/poseapp``. Not created here."""
    home = os.environ.get("POSEAPP_HOME", "").strip()
    if home:
        return Path(home).expanduser()
    repo = Path(__file__).resolve().parents[2]  # poseapp/hub/cache.py -> the checkout
    if (repo / "infer.py").is_file():
        return repo / "weights"
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "poseapp"


def cached_path(filename: str, sha256_prefix: str | None = None, cache: str | Path | None = None) -> Path | None:
    """``<cache>/filename`` if it is there and intact, else None; never touches the network.

    ``cache`` defaults to ``cache_dir()``. With no ``sha256_prefix`` any file present counts. With one, a
    matching stamp (``<filename>.sha256`` with the file's size and mtime_ns) stands in for the hash; otherwise
    the file is hashed, and the stamp written (match) or dropped (mismatch).
    """
    path = (cache_dir() if cache is None else Path(cache)) / filename
    if not path.is_file():
        return None
    if sha256_prefix is None:
        return path
    prefix = normalise_prefix(sha256_prefix)
    stamped = _read_stamp(path)
    if stamped is not None and stamped.startswith(prefix):
        return path
    digest = sha256_of(path)
    if digest.startswith(prefix):
        _write_stamp(path, digest)
        return path
    _stamp_of(path).unlink(missing_ok=True)
    return None


def fetch(
    url: str,
    filename: str,
    sha256_prefix: str | None = None,
    *,
    name: str | None = None,
    progress: bool | ProgressFn = True,
    timeout: float = 30,
    retries: int = 3,
    backoff: float = 1.0,
    cache: str | Path | None = None,
    check: Callable[[Path], None] | None = None,
    offline: bool | None = None,
) -> Path:
    """``<cache>/filename``, downloaded from ``url`` (through ``POSEAPP_MIRROR``) unless already there and intact.

    ``cache`` is the folder (None: ``cache_dir()``). A cache hit makes no request (see ``cached_path``); a
    corrupt cached file is downloaded again. ``offline`` (None: ``POSEAPP_OFFLINE``), an absent (or corrupt) file raises
    DownloadError telling how to get it; ``name`` (the zoo name) goes into that message. The other arguments
    are ``download()``'s; ``check(path)`` vets a fresh download (after its hash, before its final name): if it
    raises, the download is deleted and the error propagates. A cached file is not re-checked.
    """
    dest = (cache_dir() if cache is None else Path(cache)) / filename
    hit = cached_path(filename, sha256_prefix, dest.parent)
    if hit is not None:
        log.debug("cache hit: %s", hit)
        return hit
    if dest.exists():
        log.warning("cached %s does not match sha256 prefix %s; downloading it again", dest, sha256_prefix)
    if is_offline() if offline is None else offline:
        state = "is not in the cache" if not dest.exists() else "is in the cache but its sha256 does not match"
        raise DownloadError(
            f"{filename} {state} (offline: --offline or POSEAPP_OFFLINE): run `python infer.py fetch {name or 'NAME'}` "
            f"on a machine with internet, or copy the file to {dest}"
        )
    digest = download_verified(url, dest, sha256_prefix, progress, timeout, retries, backoff, check)
    _write_stamp(dest, digest)
    return dest


def _stamp_of(path: Path) -> Path:
    return path.with_name(path.name + _STAMP)


def _read_stamp(path: Path) -> str | None:
    """The digest in ``path``'s stamp if the stamp's size and mtime_ns are the file's, else None."""
    try:
        digest, size, mtime_ns = _stamp_of(path).read_text().split()
        st = path.stat()
    except (OSError, ValueError):
        return None
    if re.fullmatch(r"[0-9a-f]{64}", digest) and size == str(st.st_size) and mtime_ns == str(st.st_mtime_ns):
        return digest
    return None


def _write_stamp(path: Path, digest: str) -> None:
    """Write ``path``'s stamp atomically (temp file + rename); a read-only cache just goes without."""
    stamp = _stamp_of(path)
    tmp = stamp.with_name(f"{stamp.name}.{os.getpid()}.tmp")
    try:
        st = path.stat()
        tmp.write_text(f"{digest} {st.st_size} {st.st_mtime_ns}\n")
        os.replace(tmp, stamp)
    except OSError as e:
        log.debug("cannot write %s: %s", stamp, e)
        tmp.unlink(missing_ok=True)
