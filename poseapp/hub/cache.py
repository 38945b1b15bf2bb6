"""The weights cache: where it is, what it holds (verified by sha256, trusted through stamps), and ``fetch``,
which downloads only what is missing."""
from __future__ import annotations

import logging
import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

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
    with _fetching(dest):  # one download per machine: the others (Ray workers, parallel runs) wait, then hit
        if _fetched_meanwhile(dest, sha256_prefix):
            return dest
        digest = download_verified(url, dest, sha256_prefix, progress, timeout, retries, backoff, check)
        _write_stamp(dest, digest)  # before the lock goes: those waiting take the stamp as the file's proof
    return dest


def _fetched_meanwhile(dest: Path, sha256_prefix: str | None) -> bool:
    """Whether another process fetched ``dest`` while this one waited for the lock: the file is there with a
    stamp that vouches for it (not hashed again: a file found corrupt before is not re-read)."""
    if sha256_prefix is None:
        return dest.is_file() and _read_stamp(dest) is not None
    stamped = _read_stamp(dest)
    return stamped is not None and stamped.startswith(normalise_prefix(sha256_prefix))


@contextmanager
def _fetching(dest: Path) -> Iterator[None]:
    """Hold ``<dest>.lock`` (an exclusive ``flock``) while ``dest`` is fetched, so processes sharing a cache
    download a file once (those waiting find it in the cache); where the folder cannot hold the lock
    (read-only, no flock), nothing is held. The lock file is removed when the fetch ends; a process that
    waited on a lock file removed meanwhile locks the new one instead (else two fetches could run at once)."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; concurrent fetches then each download (still atomically)
        yield
        return
    lock = dest.with_name(dest.name + ".lock")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        yield  # the download reports the unwritable folder
        return
    while True:
        try:
            handle = open(lock, "a")
        except OSError:
            yield
            return
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError as e:  # a file system without locks (some network mounts)
            log.debug("cannot lock %s: %s", lock, e)
            break
        try:
            if os.fstat(handle.fileno()).st_ino == os.stat(lock).st_ino:
                break  # the lock file that is there now is the one held
        except FileNotFoundError:
            pass
        handle.close()  # removed by the process that held it: lock the one there now
    with handle:
        try:
            yield
        finally:  # removed while held: a later fetch finds the file before it looks for the lock
            lock.unlink(missing_ok=True)


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
