"""The only place that downloads: the weights cache, resumable downloads with retries, hash check, temp file + rename.

- ``cache_dir()``: ``$POSEAPP_HOME`` if set, else ``weights/`` in a checkout, else ``~/.cache/poseapp`` (pip install).
- ``cached_path(filename, sha256_prefix, cache=None)``: the intact cached file or None; never touches the network.
- ``fetch(url, filename, sha256_prefix, cache=None)``: the cached file if present and intact (no network at all),
  otherwise ``download()`` it into the cache (``cache`` or ``cache_dir()``). ``offline=True`` forbids that (not
  given: ``POSEAPP_OFFLINE=1``).
- ``download(url, dest, sha256_prefix=...)``: streams into ``dest.name + ".part"`` beside ``dest`` while
  hashing, checks the sha256 prefix, and only then renames to ``dest`` (``os.replace``): a partial or corrupt
  file never sits under the final name. A ``.part`` left by a cut, a stall or an interrupted run is resumed with
  an HTTP Range request. Network errors, cuts, timeouts (no data for ``timeout`` s) and HTTP 5xx/429 are retried
  ``retries`` times, sleeping ``backoff * 2**i`` s in between; other HTTP 4xx are not. The ``.part`` is kept when
  the network gave up (the next run resumes) and deleted on anything else (hash mismatch, HTTP 4xx, ...).
- ``mirror_url(url)``: with ``POSEAPP_MIRROR=https://host/prefix``, every URL's scheme and host are replaced by
  the mirror's (``https://download.openmmlab.com/a/b.pth`` -> ``https://host/prefix/a/b.pth``); ``download()``
  applies it, so ``fetch()`` does too.
- Google Drive URLs (hosts in ``GDRIVE_HOSTS``) are fetched with ``gdown`` (imported lazily), which gets past
  Drive's large-file confirmation page; the file is then checked and renamed exactly like an HTTP download. Drive
  downloads restart from zero (no resume). Behind a mirror the host is the mirror's, so plain HTTP is used.

Cache stamps: beside a verified cached file sits ``<filename>.sha256`` (one line: hex sha256, size, mtime_ns).
While the file's size and mtime_ns match the stamp, a cache check trusts the stamp's digest instead of re-hashing
(a 250 MB checkpoint is not re-read on every run); a touched or changed file is re-hashed.

Progress: ``progress=True`` shows a tqdm bar on stderr (hidden when stderr is not a terminal); this bar is the
library's one permitted console output (gdown's own output is always silenced). Pass ``progress=False`` for none,
or a callable ``progress(done_bytes, total_bytes_or_None)`` to report it yourself (the CLI, a GUI, a test).

Modules: ``cache`` (the cache, stamps, ``fetch``), ``downloads`` (HTTP with resume, Drive, mirror, progress).
"""
from __future__ import annotations

from poseapp.hub.cache import cache_dir, cached_path, fetch
from poseapp.hub.downloads import (GDRIVE_HOSTS, DownloadError, ProgressFn, check_file_hash, download, is_offline,
                                  mirror_url, sha256_of)

__all__ = ["DownloadError", "GDRIVE_HOSTS", "ProgressFn", "cache_dir", "cached_path", "check_file_hash", "download",
           "fetch", "is_offline", "mirror_url", "sha256_of"]
