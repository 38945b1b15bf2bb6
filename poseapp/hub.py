"""The only place that downloads: the weights cache, streamed downloads with a hash check, temp file + rename.

- ``cache_dir()``: ``$POSEAPP_HOME`` if set, else ``weights/`` beside the ``poseapp`` package.
- ``fetch(url, filename, sha256_prefix)``: the cached file if present and intact (no network at all),
  otherwise ``download()`` it into the cache. ``POSEAPP_OFFLINE=1`` forbids the download.
- ``download(url, dest, sha256_prefix=...)``: streams into ``dest.name + ".part"`` beside ``dest`` while
  hashing, checks the sha256 prefix, and only then renames to ``dest`` (``os.replace``). A failure of any
  kind deletes the ``.part`` file: a partial or corrupt file never sits under the final name.

Progress: ``progress=True`` shows a tqdm bar on stderr (hidden when stderr is not a terminal); this bar
is the library's one permitted console output. Pass ``progress=False`` for none, or a callable
``progress(done_bytes, total_bytes_or_None)`` to report it yourself (the CLI, a GUI, a test).
"""
from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Iterator, Union

from poseapp.errors import PoseAppError

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, Union[int, None]], None]
"""``progress(done_bytes, total_bytes)``; total is None when the server sends no Content-Length."""

_CHUNK = 1 << 20
_TRUE = {"1", "true", "yes", "on"}


class DownloadError(PoseAppError):
    """A download failed (HTTP error, timeout, hash mismatch) or is forbidden offline; names the URL and fix."""


def cache_dir() -> Path:
    """Where fetched files live: ``$POSEAPP_HOME`` if set, else ``<repo root>/weights``. Not created here."""
    home = os.environ.get("POSEAPP_HOME", "").strip()
    if home:
        return Path(home).expanduser()
    return Path(__file__).resolve().parent.parent / "weights"


def is_offline() -> bool:
    """True when ``POSEAPP_OFFLINE`` is set to 1/true/yes/on: nothing may be downloaded."""
    return os.environ.get("POSEAPP_OFFLINE", "").strip().lower() in _TRUE


def sha256_of(path: str | Path) -> str:
    """The lowercase hex sha256 of the file at ``path``, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def check_file_hash(path: str | Path, sha256_prefix: str) -> bool:
    """Whether the sha256 of ``path`` starts with ``sha256_prefix`` (hex, any case)."""
    return sha256_of(path).startswith(_normalise_prefix(sha256_prefix))


def fetch(
    url: str,
    filename: str,
    sha256_prefix: str | None = None,
    *,
    name: str | None = None,
    progress: bool | ProgressFn = True,
    timeout: float = 30,
) -> Path:
    """``cache_dir()/filename``, downloaded from ``url`` unless it is already there and intact.

    A cached file is re-hashed on every call when ``sha256_prefix`` is known; a mismatching one is
    downloaded again. With ``POSEAPP_OFFLINE`` set, an absent (or corrupt) file raises DownloadError
    telling how to get it; ``name`` (the zoo name) goes into that message.
    """
    dest = cache_dir() / filename
    if dest.is_file():
        if sha256_prefix is None or check_file_hash(dest, sha256_prefix):
            log.debug("cache hit: %s", dest)
            return dest
        log.warning("cached %s does not match sha256 prefix %s; downloading it again", dest, sha256_prefix)
    if is_offline():
        state = "is not in the cache" if not dest.exists() else "is in the cache but its sha256 does not match"
        raise DownloadError(
            f"{filename} {state} (POSEAPP_OFFLINE is set): run `python infer.py fetch {name or 'NAME'}` "
            f"on a machine with internet, or copy the file to {dest}"
        )
    return download(url, dest, sha256_prefix=sha256_prefix, progress=progress, timeout=timeout)


def download(
    url: str,
    dest: str | Path,
    *,
    sha256_prefix: str | None = None,
    progress: bool | ProgressFn = True,
    timeout: float = 30,
) -> Path:
    """Download ``url`` to ``dest`` through ``dest.name + ".part"``; return ``dest``.

    The sha256 is computed while streaming and checked against ``sha256_prefix`` (if given) before the
    rename. Raises DownloadError naming the URL for an HTTP error (with status and reason), a timeout,
    a truncated body, a hash mismatch (expected prefix and the digest got) or an unwritable folder; the
    ``.part`` file is deleted in every failure.
    """
    dest = Path(dest)
    prefix = _normalise_prefix(sha256_prefix) if sha256_prefix is not None else None
    part = dest.with_name(dest.name + ".part")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        fix = "set POSEAPP_HOME to a writable folder"
        raise DownloadError(f"cannot create {dest.parent} for {url}: {e} ({fix})") from e
    log.info("downloading %s -> %s", url, dest)
    done = False
    try:
        digest = _stream(url, part, progress, timeout)
        if prefix is not None and not digest.startswith(prefix):
            raise DownloadError(
                f"sha256 mismatch for {url}: expected prefix {prefix}, got {digest}; the download was deleted "
                "(retry; if it persists the file changed upstream)"
            )
        os.replace(part, dest)
        done = True
    finally:
        if not done:
            part.unlink(missing_ok=True)
    return dest


def _normalise_prefix(sha256_prefix: str) -> str:
    """Lowercase hex prefix; a ValueError for anything else (a programming error in the zoo table)."""
    prefix = sha256_prefix.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{1,64}", prefix):
        raise ValueError(f"sha256 prefix must be 1-64 hex digits, got {sha256_prefix!r}")
    return prefix


def _stream(url: str, part: Path, progress: bool | ProgressFn, timeout: float) -> str:
    """Write the body of ``url`` to ``part``; return its hex sha256. Network errors -> DownloadError."""
    request = urllib.request.Request(url, headers={"User-Agent": "poseapp"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            total = _content_length(response)
            h, got = hashlib.sha256(), 0
            with _write(part, url) as out, _reporter(progress, total, part.name[: -len(".part")]) as report:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    h.update(chunk)
                    got += len(chunk)
                    report(got)
    except urllib.error.HTTPError as e:
        raise DownloadError(f"download of {url} failed: HTTP {e.code} {e.reason}") from e
    except urllib.error.URLError as e:
        why = _reason(e.reason, timeout)
        raise DownloadError(f"download of {url} failed: {why} (check the URL and network)") from e
    except TimeoutError as e:
        raise DownloadError(f"download of {url} failed: no data for {timeout:g} s (timed out)") from e
    except (OSError, http.client.HTTPException) as e:
        raise DownloadError(f"download of {url} failed: {type(e).__name__}: {e}") from e
    if total is not None and got != total:
        raise DownloadError(f"download of {url} failed: got {got} of {total} bytes (connection closed early)")
    return h.hexdigest()


@contextlib.contextmanager
def _write(part: Path, url: str) -> Iterator[object]:
    """``part`` opened for binary writing; an OSError opening it names the file (not the network)."""
    try:
        f = open(part, "wb")
    except OSError as e:
        raise DownloadError(f"cannot write {part} for {url}: {e} (set POSEAPP_HOME to a writable folder)") from e
    with f:
        yield f


def _content_length(response: http.client.HTTPResponse) -> int | None:
    value = response.headers.get("Content-Length")
    return int(value) if value and value.isdigit() else None


def _reason(reason: object, timeout: float) -> str:
    if isinstance(reason, TimeoutError):
        return f"no answer for {timeout:g} s (timed out)"
    return str(reason)


@contextlib.contextmanager
def _reporter(progress: bool | ProgressFn, total: int | None, label: str) -> Iterator[Callable[[int], None]]:
    """A ``report(done_bytes)`` function for the chosen progress style."""
    if callable(progress):
        fn: ProgressFn = progress
        yield lambda done: fn(done, total)
        return
    if not progress:
        yield lambda done: None
        return
    from tqdm import tqdm

    with tqdm(total=total, desc=label, unit="B", unit_scale=True, unit_divisor=1024, disable=None) as bar:
        yield lambda done: bar.update(done - bar.n)
