"""Downloads: resumable HTTP(S) with retries, Google Drive through gdown, the sha256 checked while streaming,
a ``.part`` renamed onto the final name only once verified; the mirror; progress reporting."""
from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Union

from poseapp.errors import PoseAppError

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, Union[int, None]], None]
"""``progress(done_bytes, total_bytes)``; total is None when the server sends no Content-Length."""

GDRIVE_HOSTS: tuple[str, ...] = ("drive.google.com", "drive.usercontent.google.com", "docs.google.com")
"""Hosts whose URLs are downloaded with gdown (Google Drive's confirmation page, cookies, redirects)."""

_CHUNK = 1 << 20
_sleep = time.sleep  # the back-off between attempts; tests replace it


class DownloadError(PoseAppError):
    """A download failed (HTTP error, timeout, hash mismatch) or is forbidden offline; names the URL and fix."""


class _Transient(Exception):
    """One attempt failed in a way a retry may cure (network error, cut, timeout, HTTP 5xx/429); one-line why."""


def mirror_url(url: str) -> str:
    """``url`` with its scheme and host replaced by ``$POSEAPP_MIRROR`` (path and query kept); unchanged if unset.

    ``POSEAPP_MIRROR=https://host/prefix`` maps ``https://download.openmmlab.com/mmpose/v1/a.pth`` to
    ``https://host/prefix/mmpose/v1/a.pth``. A value without an http(s) scheme and a host raises DownloadError.
    """
    mirror = os.environ.get("POSEAPP_MIRROR", "").strip()
    if not mirror:
        return url
    base = urllib.parse.urlsplit(mirror)
    if base.scheme not in ("http", "https") or not base.netloc:
        raise DownloadError(f"POSEAPP_MIRROR={mirror!r} is not an http(s) URL with a host (e.g. "
                            "POSEAPP_MIRROR=https://mirror.example.org/poseapp; unset it to use the original URLs)")
    parts = urllib.parse.urlsplit(url)
    path = base.path.rstrip("/") + parts.path
    return urllib.parse.urlunsplit((base.scheme, base.netloc, path, parts.query, parts.fragment))


def sha256_of(path: str | Path) -> str:
    """The lowercase hex sha256 of the file at ``path``, read in 1 MiB chunks."""
    h = hashlib.sha256()
    hash_file_into(h, Path(path))
    return h.hexdigest()


def check_file_hash(path: str | Path, sha256_prefix: str) -> bool:
    """Whether the sha256 of ``path`` starts with ``sha256_prefix`` (hex, any case)."""
    return sha256_of(path).startswith(normalise_prefix(sha256_prefix))


_TRUE = {"1", "true", "yes", "on"}


def is_offline() -> bool:
    """True when ``POSEAPP_OFFLINE`` is set to 1/true/yes/on. Read once, where a public call gets
    ``offline=None``; everything below takes ``offline`` as an argument."""
    return os.environ.get("POSEAPP_OFFLINE", "").strip().lower() in _TRUE


def download(
    url: str,
    dest: str | Path,
    *,
    sha256_prefix: str | None = None,
    progress: bool | ProgressFn = True,
    timeout: float = 30,
    retries: int = 3,
    backoff: float = 1.0,
    offline: bool | None = None,
) -> Path:
    """Download ``url`` (through ``POSEAPP_MIRROR``) to ``dest`` via ``dest.name + ".part"``; return ``dest``.

    The sha256 is computed while streaming and checked against ``sha256_prefix`` (if given) before the rename.
    An existing ``.part`` is resumed (``Range: bytes=N-``; a 200 or 416 answer restarts from zero). Transient
    failures (network errors, cuts, no data for ``timeout`` s, HTTP 5xx/429) are retried ``retries`` times after
    ``backoff * 2**i`` s. Raises DownloadError (one line naming the URL, what happened and the fix) for a
    permanent HTTP error, retries exhausted (the ``.part`` is kept for the next run), a hash mismatch (expected
    prefix and digest got; the ``.part`` is deleted), an unwritable folder, or ``offline`` (None: as
    ``POSEAPP_OFFLINE`` says).
    """
    if is_offline() if offline is None else offline:
        raise DownloadError(f"offline (--offline or POSEAPP_OFFLINE): not downloading {mirror_url(url)} (go online, "
                            f"or copy the file to {dest})")
    download_verified(url, Path(dest), sha256_prefix, progress, timeout, retries, backoff)
    return Path(dest)


def download_verified(url: str, dest: Path, sha256_prefix: str | None, progress: bool | ProgressFn,
                      timeout: float, retries: int, backoff: float, check: Callable[[Path], None] | None = None) -> str:
    """``download()`` (whose caller has checked it may go online), returning the file's hex sha256."""
    prefix = normalise_prefix(sha256_prefix) if sha256_prefix is not None else None
    url = mirror_url(url)
    part = dest.with_name(dest.name + ".part")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadError(f"cannot create {dest.parent} for {url}: {e.strerror or e} ({_WRITABLE})") from e
    drive = urllib.parse.urlsplit(url).hostname in GDRIVE_HOSTS
    log.info("downloading %s -> %s%s", url, dest, " (Google Drive, via gdown)" if drive else "")
    with _reporter(progress, dest.name) as report:
        if drive:
            digest = _with_retries(url, part, lambda: _gdrive_attempt(url, part, dest, report, timeout),
                                   retries, backoff, resumable=False)
        else:
            digest = _with_retries(url, part, lambda: _http_attempt(url, part, report, timeout),
                                   retries, backoff, resumable=True)
    if prefix is not None and not digest.startswith(prefix):
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"sha256 mismatch for {url}: expected prefix {prefix}, got {digest}; the download was deleted "
            "(retry; if it persists the file changed upstream)"
        )
    if check is not None:
        try:
            check(part)
        except BaseException:
            _discard(part)
            raise
    os.replace(part, dest)
    return digest


_WRITABLE = "choose a writable weights folder: POSEAPP_HOME, or fetch --dir"


def _discard(part: Path) -> None:
    """Remove a ``.part`` file if it can be (on a read-only disk it cannot, and need not)."""
    try:
        part.unlink(missing_ok=True)
    except OSError as e:
        log.debug("cannot remove %s: %s", part, e)


def _with_retries(url: str, part: Path, attempt: Callable[[], str], retries: int, backoff: float, *,
                  resumable: bool) -> str:
    """``attempt()`` until it returns, retrying a _Transient ``retries`` times with exponential back-off.

    Retries exhausted: DownloadError, keeping a non-empty ``.part`` when ``resumable``. Any other failure
    (DownloadError, ...) deletes the ``.part``; an interruption (Ctrl-C) leaves it for the next run.
    """
    attempts = max(retries, 0) + 1
    try:
        for i in range(attempts):
            try:
                return attempt()
            except _Transient as e:
                why = str(e)
                if i + 1 < attempts:
                    delay = backoff * 2**i
                    log.warning("download of %s: %s; retrying in %g s (attempt %d of %d)", url, why, delay, i + 1,
                                attempts)
                    _sleep(delay)
    except Exception:
        _discard(part)
        raise
    after = f" after {attempts} attempts" if attempts > 1 else ""
    if resumable and part.is_file() and part.stat().st_size > 0:
        fix = f"the partial file {part.name} is kept and the next run resumes"
    else:
        part.unlink(missing_ok=True)
        fix = "check the network (and POSEAPP_MIRROR if set) and try again"
    raise DownloadError(f"download of {url} failed{after}: {why}; {fix}")


# ----------------------------------------------------------------------------------------- HTTP(S) with resume


def _http_attempt(url: str, part: Path, report: ProgressFn, timeout: float) -> str:
    """One GET of ``url`` into ``part`` (resumed with a Range request when ``part`` has bytes); its hex sha256."""
    offset = part.stat().st_size if part.is_file() else 0
    response = _open(url, timeout, offset)
    if offset and (response is None or (response.status == 206 and _range_start(response) != offset)):
        # 416 (the .part is as long as the file, or longer) or a 206 for other bytes: start over without Range
        if response is not None:
            response.close()
        part.unlink()
        offset, response = 0, _open(url, timeout, 0)
    with response:  # not None: only a Range request can get 416
        if response.status != 206:  # 200: the whole body (a server that ignores Range restarts from zero)
            offset = 0
        length = _content_length(response)
        total = _range_total(response) or (offset + length if length is not None else None)
        h = hashlib.sha256()
        if offset:
            hash_file_into(h, part)
        got = offset
        report(got, total)
        try:
            out = open(part, "ab" if offset else "wb")
        except OSError as e:
            raise DownloadError(f"cannot write {part}: {(e.strerror or str(e)).lower()} ({_WRITABLE})") from e
        with out:
            while chunk := _read(response, url, timeout):
                _write_chunk(out, chunk, part, url)
                h.update(chunk)
                got += len(chunk)
                report(got, total)
    if total is not None and got != total:
        raise _Transient(f"got {got} of {total} bytes (connection closed early)")
    return h.hexdigest()


def _open(url: str, timeout: float, offset: int) -> http.client.HTTPResponse | None:
    """The response to GET ``url`` (from byte ``offset`` when > 0); None for 416 to a Range request."""
    headers = {"User-Agent": "poseapp"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        e.close()
        if e.code == 416 and offset:
            return None
        if e.code == 429 or e.code >= 500:
            raise _Transient(f"HTTP {e.code} {e.reason}") from e
        raise DownloadError(f"download of {url} failed: HTTP {e.code} {e.reason} (not retried: check the URL, "
                            "and POSEAPP_MIRROR if set)") from e
    except urllib.error.URLError as e:
        raise _Transient(_reason(e.reason, timeout)) from e
    except (OSError, http.client.HTTPException) as e:
        raise _Transient(_reason(e, timeout)) from e


def _read(response: http.client.HTTPResponse, url: str, timeout: float) -> bytes:
    """The next chunk of the body (b"" at its end, or when the server closes early); network errors -> _Transient."""
    try:
        return response.read(_CHUNK)
    except (OSError, http.client.HTTPException) as e:
        raise _Transient(_reason(e, timeout, "no data")) from e


def _write_chunk(out: BinaryIO, chunk: bytes, part: Path, url: str) -> None:
    try:
        out.write(chunk)
    except OSError as e:  # a full disk is no network error: not retried
        raise DownloadError(f"cannot write {part} for {url}: {e} (free some space, or set POSEAPP_HOME to "
                            "another folder)") from e


def _range_start(response: http.client.HTTPResponse) -> int | None:
    m = re.fullmatch(r"bytes (\d+)-\d+/(?:\d+|\*)", response.headers.get("Content-Range", "").strip())
    return int(m[1]) if m else None


def _range_total(response: http.client.HTTPResponse) -> int | None:
    """The whole file's size from a 206's ``Content-Range: bytes a-b/TOTAL``; None when absent or ``*``."""
    m = re.fullmatch(r"bytes \d+-\d+/(\d+)", response.headers.get("Content-Range", "").strip())
    return int(m[1]) if m and response.status == 206 else None


def _content_length(response: http.client.HTTPResponse) -> int | None:
    value = response.headers.get("Content-Length")
    return int(value) if value and value.isdigit() else None


def _reason(reason: object, timeout: float, waiting_for: str = "no answer") -> str:
    """One line for a network failure: a timeout says how long nothing came; an OSError keeps its errno text."""
    if isinstance(reason, TimeoutError):
        return f"{waiting_for} for {timeout:g} s (timed out)"
    if isinstance(reason, OSError) and reason.errno is not None:
        return str(reason)
    if isinstance(reason, BaseException):
        return f"{type(reason).__name__}: {reason}"
    return str(reason)


# ----------------------------------------------------------------------------------------- Google Drive (gdown)


def _gdrive_attempt(url: str, part: Path, dest: Path, report: ProgressFn, timeout: float) -> str:
    """One gdown download of the Drive file ``url`` into ``part`` (from zero); its hex sha256."""
    import gdown
    import requests

    fix = f"try again later, or download it in a browser and save it as {dest}"
    h = hashlib.sha256()
    try:
        out = open(part, "wb")
    except OSError as e:
        raise DownloadError(f"cannot write {part}: {(e.strerror or str(e)).lower()} ({_WRITABLE})") from e
    try:
        with out:
            report(0, None)
            gdown.download(**_gdrive_source(url), output=out, quiet=True, progress=report, use_cookies=False,
                           hasher=h, timeout=timeout, retries=0)
    except gdown.exceptions.FileURLRetrievalError as e:  # permissions, quota ("Too many users ..."), no file
        why = " ".join(str(e.__context__ or e).split())
        raise DownloadError(f"Google Drive would not serve {url}: {why} ({fix})") from e
    except requests.HTTPError as e:
        code, reason = e.response.status_code, e.response.reason
        if code == 429 or code >= 500:
            raise _Transient(f"HTTP {code} {reason}") from e
        raise DownloadError(f"download of {url} failed: HTTP {code} {reason} (not retried; {fix})") from e
    except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
            gdown.exceptions.DownloadError) as e:
        timed_out = isinstance(e, requests.Timeout) or "timed out" in str(e).lower()
        why = f"no data for {timeout:g} s (timed out)" if timed_out else " ".join(str(e).split())
        raise _Transient(why) from e
    except OSError as e:  # writing the .part (requests' errors are OSErrors too, caught above)
        raise DownloadError(f"cannot write {part} for {url}: {e} (free some space, or set POSEAPP_HOME to "
                            "another folder)") from e
    if _looks_like_html(part):
        raise DownloadError(f"Google Drive answered a web page instead of the file for {url} (a quota or "
                            f"permission page; {fix})")
    return h.hexdigest()


def _gdrive_source(url: str) -> dict[str, str]:
    """gdown's arguments for ``url``: ``id=`` when the query names one (gdown then walks Drive's own flow from
    ``drive.google.com/uc?id=``, confirmation page included), else ``url=``."""
    ids = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query).get("id", [])
    return {"id": ids[0]} if len(ids) == 1 else {"url": url}


def _looks_like_html(path: Path) -> bool:
    """Whether the file starts like a web page (what Drive sends instead of a file it will not serve)."""
    with open(path, "rb") as f:
        head = f.read(1024).lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html"))


# ----------------------------------------------------------------------------------------- hashes and stamps


def normalise_prefix(sha256_prefix: str) -> str:
    """Lowercase hex prefix; a ValueError for anything else (a programming error in the zoo table)."""
    prefix = sha256_prefix.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{1,64}", prefix):
        raise ValueError(f"sha256 prefix must be 1-64 hex digits, got {sha256_prefix!r}")
    return prefix


def hash_file_into(h: "hashlib._Hash", path: Path) -> None:
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)


# ----------------------------------------------------------------------------------------- progress


@contextlib.contextmanager
def _reporter(progress: bool | ProgressFn, label: str) -> Iterator[ProgressFn]:
    """A ``report(done_bytes, total_bytes)`` function for the chosen progress style (one bar per download)."""
    if callable(progress):
        yield progress
        return
    if not progress:
        yield lambda done, total: None
        return
    from tqdm import tqdm

    with tqdm(total=None, desc=label, unit="B", unit_scale=True, unit_divisor=1024, disable=None) as bar:

        def report(done: int, total: int | None) -> None:
            if total != bar.total:
                bar.total = total
            bar.update(done - bar.n)

        yield report
