"""hub: downloads from a real local HTTP server (127.0.0.1 only): resume, retries, timeouts, hash checks, mirror,
Google Drive through gdown, cache stamps and offline rules."""
from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

import numpy as np
import pytest
from conftest import ROOT

from poseapp import hub
import poseapp.hub.cache  # noqa: F401 (hub.cache, hub.download: where the patched names are used)
import poseapp.hub.downloads  # noqa: F401
from poseapp.hub import DownloadError, cache_dir, cached_path, check_file_hash, download, fetch, mirror_url, sha256_of

GOOD = np.random.default_rng(0).integers(0, 256, 3 * (1 << 20) + 123, dtype=np.uint8).tobytes()
GOOD_SHA = hashlib.sha256(GOOD).hexdigest()
WRONG = GOOD[:-1] + bytes([GOOD[-1] ^ 0xFF])  # same size, one byte off
WRONG_SHA = hashlib.sha256(WRONG).hexdigest()
HALF = len(GOOD) // 2

DRIVE_HOSTS = ("drive.google.com", "drive.usercontent.google.com")
DRIVE_FILES = {"GOODID": GOOD, "WRONGID": WRONG}
DRIVE_URL = "https://drive.usercontent.google.com/download?id={}&export=download&confirm=t"  # the zoo's shape
# What Drive answers for a file too large to virus-scan (one line, as Drive sends it; gdown reads the form).
DRIVE_WARNING = (
    '<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head><body><div class="uc-main">'
    '<div id="uc-text"><p class="uc-warning-caption">Google Drive can\'t scan this file for viruses.</p>'
    '<p class="uc-warning-subcaption"><span class="uc-name-size"><a href="/open?id={id}">model.pth</a> (3M)</span> '
    "is too large for Google to check for viruses. Would you still like to download this file?</p>"
    '<form id="download-form" action="https://drive.usercontent.google.com/download" method="get">'
    '<input type="submit" id="uc-download-link" class="goog-inline-block jfk-button jfk-button-action" '
    'value="Download anyway"/><input type="hidden" name="id" value="{id}"><input type="hidden" name="export" '
    'value="download"><input type="hidden" name="confirm" value="t"><input type="hidden" name="uuid" '
    'value="0b6a9f3e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"></form></div></div></body></html>'
)
DRIVE_QUOTA = (
    "<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head><body>\n"
    '<p class="uc-error-caption">Sorry, you can&#39;t view or download this file at this time.</p>\n'
    '<p class="uc-error-subcaption">Too many users have viewed or downloaded this file recently. Please try '
    "accessing the file again later.</p>\n</body></html>"
)


@dataclass
class Hit:
    """One request the server got, and the status it answered."""

    path: str
    host: str
    range: str | None
    user_agent: str
    status: int = 0


class _Handler(BaseHTTPRequestHandler):
    """Routes by the last path component (Range honoured unless said otherwise):

    good.pth, wrong.pth (other bytes), short.pth (always closes after 1000 bytes, ignores Range), slow.pth
    (headers after 1.5 s), late-good.pth (good.pth after 0.5 s),
    cut-once.pth (the first answer closes half-way), norange-cut-once.pth (the same, then
    ignores Range), stall-once.pth (the first answer stalls half-way), stall.pth (every answer stalls at half),
    flaky.pth (500 once, then good.pth), page.pth (an HTML page), download?id=ID (a mirror of Drive files that
    honours the query), 500, anything else 404. A request whose Host is a Drive host goes to ``_drive``.
    """

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        host = (self.headers.get("Host") or "").split(":")[0]
        self.hit = Hit(self.path, host, self.headers.get("Range"), self.headers.get("User-Agent", ""))
        self.server.requests.append(self.hit)  # type: ignore[attr-defined]
        if host in DRIVE_HOSTS:
            return self._drive()
        url = urlsplit(self.path)
        name = url.path.rsplit("/", 1)[-1]
        self.server.counts[name] += 1  # type: ignore[attr-defined]
        first = self.server.counts[name] == 1  # type: ignore[attr-defined]
        if name == "good.pth" or (name == "flaky.pth" and not first):
            self._send(GOOD)
        elif name == "wrong.pth":
            self._send(WRONG)
        elif name == "short.pth":
            self._send(GOOD, ranges=False, end=1000)
        elif name == "slow.pth":
            time.sleep(1.5)  # longer than the client's timeout, bounded
            self._send(GOOD[:10])
        elif name == "late-good.pth":
            time.sleep(0.5)  # long enough for a second fetch to arrive while the first downloads
            self._send(GOOD)
        elif name == "cut-once.pth":
            self._send(GOOD, end=HALF if first else None)
        elif name == "norange-cut-once.pth":
            self._send(GOOD, ranges=False, end=HALF if first else None)
        elif name == "stall-once.pth":
            self._send(GOOD, end=HALF if first else None, stall=first)
        elif name == "stall.pth":
            self._send(GOOD, end=HALF, stall=True)
        elif name == "page.pth":
            self._html("<!DOCTYPE html><html><body>Sign in to continue</body></html>")
        elif name == "download" and parse_qs(url.query).get("id", [""])[0] in DRIVE_FILES:
            self._send(DRIVE_FILES[parse_qs(url.query)["id"][0]])
        elif name in ("500", "flaky.pth"):
            self.send_error(500, "Internal Server Error")
        else:
            self.send_error(404, "Not Found")

    def _drive(self) -> None:
        """Google Drive as gdown meets it: /uc redirects to the usercontent host, whose /download answers the virus
        scan warning page (or a quota page) until the form's confirm and uuid come back, then the file."""
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        file_id = query.get("id", [""])[0]
        if url.path == "/uc":
            self.send_response(303)
            self.send_header("Location", f"https://drive.usercontent.google.com/download?id={file_id}&export=download")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif url.path == "/download" and file_id == "QUOTAID":
            self._html(DRIVE_QUOTA)
        elif url.path == "/download" and file_id in DRIVE_FILES and "uuid" in query and query.get("confirm") == ["t"]:
            self._send(DRIVE_FILES[file_id], headers={"Content-Disposition": 'attachment; filename="model.pth"'})
        elif url.path == "/download" and file_id in DRIVE_FILES:
            self._html(DRIVE_WARNING.format(id=file_id))
        else:
            self.send_error(404, "Not Found")

    def _send(self, body: bytes, *, ranges: bool = True, end: int | None = None, stall: bool = False,
              headers: dict[str, str] | None = None) -> None:
        """``body`` (from a ``Range: bytes=N-`` if ``ranges``) announced whole, but written only up to ``end``;
        then the connection closes, or with ``stall`` hangs until the test ends."""
        start = 0
        if ranges and self.hit.range:
            start = int(re.fullmatch(r"bytes=(\d+)-", self.hit.range)[1])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body) - start))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        try:
            self.wfile.write(body[start : max(start, end if end is not None else len(body))])
            if stall:
                self.server.stop.wait(10)  # type: ignore[attr-defined]
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
            pass

    def _html(self, text: str) -> None:
        body = text.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_response(self, code: int, message: str | None = None) -> None:
        self.hit.status = code
        super().send_response(code, message)

    def log_message(self, *args) -> None:  # keep the test output clean
        pass


@pytest.fixture
def server():
    """A ThreadingHTTPServer on 127.0.0.1:<free port>; ``server.url(name)``; ``server.requests`` lists Hits."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.requests = []  # type: ignore[attr-defined]
    httpd.counts = Counter()  # type: ignore[attr-defined]
    httpd.stop = threading.Event()  # type: ignore[attr-defined]  (releases stalled answers)
    httpd.url = lambda name: f"http://127.0.0.1:{httpd.server_address[1]}/files/{name}"  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd
    httpd.stop.set()
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture
def drive(server, monkeypatch):
    """Google's Drive hosts routed to the local server, as a hosts-file entry would (plain HTTP, Host kept).

    gdown rewrites every Drive link to ``https://drive.google.com/uc?id=...`` and parses Drive's confirmation page
    only for Google host names, so pointing GDRIVE_HOSTS at 127.0.0.1 would merely make gdown do a plain GET. No
    gdown code is patched instead: requests' adapter lookup sends those host names to 127.0.0.1, and gdown's own
    requests, redirects and form parsing run unchanged against the server's imitation of Drive.
    """
    import requests
    import requests.adapters

    port = server.server_address[1]

    class ToLocal(requests.adapters.HTTPAdapter):
        def send(self, request, **kwargs):
            parts = urlsplit(request.url)
            request.headers["Host"] = parts.hostname
            request.url = urlunsplit(("http", f"127.0.0.1:{port}", parts.path, parts.query, ""))
            kwargs["proxies"] = {}
            return super().send(request, **kwargs)

    to_local, real = ToLocal(), requests.Session.get_adapter
    monkeypatch.setattr(
        requests.Session, "get_adapter",
        lambda self, url: to_local if urlsplit(url).hostname in DRIVE_HOSTS else real(self, url),
    )
    return server


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    """Every test gets its own POSEAPP_HOME, starts online and without a mirror."""
    home = tmp_path / "cache"
    monkeypatch.setenv("POSEAPP_HOME", str(home))
    monkeypatch.delenv("POSEAPP_OFFLINE", raising=False)
    monkeypatch.delenv("POSEAPP_MIRROR", raising=False)
    return home


@pytest.fixture(autouse=True)
def sleeps(monkeypatch) -> list[float]:
    """hub's back-off sleeps, recorded instead of slept (no route's answer depends on the time between tries)."""
    seen: list[float] = []
    monkeypatch.setattr(hub.downloads, "_sleep", seen.append)
    return seen


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ---------------------------------------------------------------------------------------------------------------
# download()
# ---------------------------------------------------------------------------------------------------------------


def test_download_with_the_right_prefix_lands_under_the_final_name(server, tmp_path):
    dest = tmp_path / "out" / "model-abc.pth"
    seen: list[tuple[int, int | None]] = []
    got = download(
        server.url("good.pth"), dest, sha256_prefix=GOOD_SHA[:8].upper(), progress=lambda d, t: seen.append((d, t))
    )
    assert got == dest and dest.read_bytes() == GOOD
    assert files_in(dest.parent) == ["model-abc.pth"]  # no .part left
    assert seen[-1] == (len(GOOD), len(GOOD)) and len(seen) >= 3  # streamed in chunks
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_download_without_prefix_and_with_the_tqdm_bar(server, tmp_path):
    dest = download(server.url("good.pth"), tmp_path / "m.pth", progress=True)
    assert sha256_of(dest) == GOOD_SHA


def test_wrong_content_raises_and_leaves_nothing(server, tmp_path):
    dest = tmp_path / "model.pth"
    url = server.url("wrong.pth")
    with pytest.raises(DownloadError) as e:
        download(url, dest, sha256_prefix=GOOD_SHA[:8], progress=False)
    msg = str(e.value)
    assert url in msg and f"expected prefix {GOOD_SHA[:8]}" in msg and f"got {WRONG_SHA}" in msg and "\n" not in msg
    assert files_in(tmp_path) == []  # neither model.pth nor model.pth.part


def test_failed_download_keeps_an_existing_final_file(server, tmp_path):
    dest = tmp_path / "model.pth"
    dest.write_bytes(b"old")
    with pytest.raises(DownloadError):
        download(server.url("wrong.pth"), dest, sha256_prefix=GOOD_SHA[:8], progress=False)
    assert dest.read_bytes() == b"old" and files_in(tmp_path) == ["model.pth"]


@pytest.mark.parametrize("route, status", [("missing.pth", "HTTP 404 Not Found"), ("500", "HTTP 500")])
def test_http_errors_name_the_url_and_status(server, tmp_path, route, status):
    url = server.url(route)
    with pytest.raises(DownloadError) as e:
        download(url, tmp_path / "m.pth", progress=False)
    assert url in str(e.value) and status in str(e.value)
    assert files_in(tmp_path) == []


def test_truncated_body_raises_and_keeps_the_part_for_the_next_run(server, tmp_path):
    # Changed on purpose: a cut used to delete the .part; now it is kept so that the next run resumes it.
    with pytest.raises(DownloadError, match=r"short\.pth failed: .*got 1000 of \d+ bytes.*next run resumes"):
        download(server.url("short.pth"), tmp_path / "m.pth", progress=False, retries=0)
    assert files_in(tmp_path) == ["m.pth.part"] and (tmp_path / "m.pth.part").read_bytes() == GOOD[:1000]


def test_timeout_raises_naming_the_url(server, tmp_path):
    t0 = time.monotonic()
    with pytest.raises(DownloadError, match=r"slow\.pth failed: .*timed out"):
        download(server.url("slow.pth"), tmp_path / "m.pth", progress=False, timeout=0.3, retries=0)
    assert time.monotonic() - t0 < 1.4  # retries=0: one wait of 0.3 s (retries are tested below)
    assert files_in(tmp_path) == []


def test_connection_refused_names_the_url(tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/m.pth"
    with pytest.raises(DownloadError, match="refused") as e:
        download(url, tmp_path / "m.pth", progress=False, timeout=2)
    assert url in str(e.value)


# ---------------------------------------------------------------------------------------------------------------
# resume (HTTP Range)
# ---------------------------------------------------------------------------------------------------------------


def test_a_cut_half_way_is_resumed_with_a_range_request(server, tmp_path, sleeps):
    dest = tmp_path / "m.pth"
    assert download(server.url("cut-once.pth"), dest, sha256_prefix=GOOD_SHA[:8], progress=False) == dest
    assert dest.read_bytes() == GOOD and files_in(tmp_path) == ["m.pth"]  # no .part left
    first, second = server.requests
    assert (first.range, first.status) == (None, 200)
    assert (second.range, second.status) == (f"bytes={HALF}-", 206)  # only the missing half came again
    assert sleeps == [1.0]  # one back-off of `backoff * 2**0`


def test_a_part_left_by_an_earlier_run_is_resumed(server, tmp_path):
    dest = tmp_path / "m.pth"
    (tmp_path / "m.pth.part").write_bytes(GOOD[:12345])
    seen: list[tuple[int, int | None]] = []
    download(server.url("good.pth"), dest, sha256_prefix=GOOD_SHA[:8], progress=lambda d, t: seen.append((d, t)))
    assert dest.read_bytes() == GOOD and files_in(tmp_path) == ["m.pth"]
    assert [(h.range, h.status) for h in server.requests] == [("bytes=12345-", 206)]
    assert seen[0] == (12345, len(GOOD)) and seen[-1] == (len(GOOD), len(GOOD))  # progress starts at the offset


def test_a_resumed_download_with_the_tqdm_bar(server, tmp_path):
    (tmp_path / "m.pth.part").write_bytes(GOOD[:HALF])
    assert sha256_of(download(server.url("good.pth"), tmp_path / "m.pth", progress=True)) == GOOD_SHA


def test_ctrl_c_keeps_the_part_and_the_next_run_resumes(server, tmp_path):
    def interrupt(done: int, total: int | None) -> None:
        if done > HALF:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        download(server.url("good.pth"), tmp_path / "m.pth", progress=interrupt)
    kept = (tmp_path / "m.pth.part").stat().st_size
    assert files_in(tmp_path) == ["m.pth.part"] and HALF < kept < len(GOOD)
    download(server.url("good.pth"), tmp_path / "m.pth", sha256_prefix=GOOD_SHA[:8], progress=False)
    assert (tmp_path / "m.pth").read_bytes() == GOOD and server.requests[-1].range == f"bytes={kept}-"


def test_a_server_that_ignores_range_restarts_from_zero(server, tmp_path):
    dest = download(server.url("norange-cut-once.pth"), tmp_path / "m.pth", sha256_prefix=GOOD_SHA, progress=False)
    assert dest.read_bytes() == GOOD and files_in(tmp_path) == ["m.pth"]
    assert [(h.range, h.status) for h in server.requests] == [(None, 200), (f"bytes={HALF}-", 200)]


def test_a_part_longer_than_the_file_gets_416_and_restarts_without_range(server, tmp_path):
    (tmp_path / "m.pth.part").write_bytes(GOOD + b"junk")
    dest = download(server.url("good.pth"), tmp_path / "m.pth", sha256_prefix=GOOD_SHA[:8], progress=False)
    assert dest.read_bytes() == GOOD and files_in(tmp_path) == ["m.pth"]
    assert [(h.range, h.status) for h in server.requests] == [(f"bytes={len(GOOD) + 4}-", 416), (None, 200)]


def test_a_stale_part_with_other_bytes_fails_the_hash_and_is_deleted(server, tmp_path):
    (tmp_path / "m.pth.part").write_bytes(b"x" * 1000)  # e.g. left by an older version of the file
    url = server.url("good.pth")
    with pytest.raises(DownloadError, match=f"expected prefix {GOOD_SHA[:8]}, got "):
        download(url, tmp_path / "m.pth", sha256_prefix=GOOD_SHA[:8], progress=False)
    assert files_in(tmp_path) == []  # the next run starts from zero
    download(url, tmp_path / "m.pth", sha256_prefix=GOOD_SHA[:8], progress=False)
    assert [h.range for h in server.requests] == ["bytes=1000-", None]


# ---------------------------------------------------------------------------------------------------------------
# retries, back-off and timeouts
# ---------------------------------------------------------------------------------------------------------------


def test_a_server_error_is_retried_then_succeeds(server, tmp_path, sleeps):
    dest = download(server.url("flaky.pth"), tmp_path / "m.pth", sha256_prefix=GOOD_SHA[:8], progress=False)
    assert dest.read_bytes() == GOOD
    assert [h.status for h in server.requests] == [500, 200] and sleeps == [1.0]


def test_404_is_not_retried(server, tmp_path, sleeps):
    url = server.url("missing.pth")
    with pytest.raises(DownloadError) as e:
        download(url, tmp_path / "m.pth", progress=False)
    assert str(e.value) == f"download of {url} failed: HTTP 404 Not Found (not retried: check the URL, and " \
                           "POSEAPP_MIRROR if set)"
    assert len(server.requests) == 1 and sleeps == []


def test_retries_exhausted_names_the_attempts_and_backs_off_exponentially(server, tmp_path, sleeps):
    url = server.url("500")
    with pytest.raises(DownloadError) as e:
        download(url, tmp_path / "m.pth", progress=False, retries=2, backoff=0.5)
    assert str(e.value) == (f"download of {url} failed after 3 attempts: HTTP 500 Internal Server Error; check the "
                            "network (and POSEAPP_MIRROR if set) and try again")
    assert len(server.requests) == 3 and sleeps == [0.5, 1.0]
    with pytest.raises(DownloadError, match="after 4 attempts"):
        download(url, tmp_path / "m.pth", progress=False)  # the defaults: retries=3, backoff=1.0
    assert sleeps[2:] == [1.0, 2.0, 4.0]


def test_a_stall_mid_body_times_out_then_resumes(server, tmp_path):
    t0 = time.monotonic()
    dest = download(server.url("stall-once.pth"), tmp_path / "m.pth", sha256_prefix=GOOD_SHA[:8], progress=False,
                    timeout=0.3)
    assert time.monotonic() - t0 < 3
    assert dest.read_bytes() == GOOD and files_in(tmp_path) == ["m.pth"]
    first, second = server.requests
    assert first.range is None and second.status == 206 and 0 < int(second.range[6:-1]) <= HALF


def test_a_server_that_stalls_for_ever_times_out_and_keeps_the_part(server, tmp_path, sleeps):
    url = server.url("stall.pth")
    t0 = time.monotonic()
    with pytest.raises(DownloadError) as e:
        download(url, tmp_path / "m.pth", progress=False, timeout=0.3, retries=2)
    assert time.monotonic() - t0 < 5  # three waits of 0.3 s, whatever the server does
    msg = str(e.value)
    assert msg.startswith(f"download of {url} failed after 3 attempts: no data for 0.3 s (timed out); ")
    assert msg.endswith("the partial file m.pth.part is kept and the next run resumes") and "\n" not in msg
    assert files_in(tmp_path) == ["m.pth.part"] and 0 < (tmp_path / "m.pth.part").stat().st_size <= HALF
    assert len(server.requests) == 3 and sleeps == [1.0, 2.0]


# ---------------------------------------------------------------------------------------------------------------
# POSEAPP_MIRROR
# ---------------------------------------------------------------------------------------------------------------


OPENMMLAB = "https://download.openmmlab.com/mmpose/v1/a/b.pth"


@pytest.mark.parametrize("mirror, url, expected", [
    ("https://host/prefix", OPENMMLAB, "https://host/prefix/mmpose/v1/a/b.pth"),
    ("https://host/prefix/", OPENMMLAB, "https://host/prefix/mmpose/v1/a/b.pth"),  # trailing slash
    ("http://10.0.0.2:8080", "https://x.org/a.pth", "http://10.0.0.2:8080/a.pth"),
    ("https://host/p", DRIVE_URL.format("ID"), "https://host/p/download?id=ID&export=download&confirm=t"),
    ("", "https://x.org/a.pth?v=1", "https://x.org/a.pth?v=1"),
])
def test_mirror_url_replaces_scheme_and_host(monkeypatch, mirror, url, expected):
    monkeypatch.setenv("POSEAPP_MIRROR", mirror)
    assert mirror_url(url) == expected


def test_mirror_url_without_the_variable_is_the_identity():
    assert mirror_url("https://x.org/a.pth") == "https://x.org/a.pth"


@pytest.mark.parametrize("mirror", ["mirror.example.org/weights", "ftp://mirror.example.org", "https://", "/srv/w"])
def test_a_malformed_mirror_is_an_error_with_an_example(server, monkeypatch, mirror):
    monkeypatch.setenv("POSEAPP_MIRROR", mirror)
    with pytest.raises(DownloadError) as e:
        fetch(server.url("good.pth"), "m.pth", GOOD_SHA[:8], progress=False)
    msg = str(e.value)
    assert f"POSEAPP_MIRROR={mirror!r}" in msg and "e.g. POSEAPP_MIRROR=https://" in msg and "\n" not in msg
    assert server.requests == []


def test_fetch_goes_through_the_mirror(server, cache, monkeypatch):
    monkeypatch.setenv("POSEAPP_MIRROR", server.url("").rstrip("/"))  # http://127.0.0.1:PORT/files
    path = fetch("https://download.invalid/mmpose/v1/good.pth", "m.pth", GOOD_SHA[:8], progress=False)
    assert path.read_bytes() == GOOD
    assert [h.path for h in server.requests] == ["/files/mmpose/v1/good.pth"]  # download.invalid never asked


def test_a_drive_url_behind_a_mirror_is_plain_http(server, cache, monkeypatch):
    monkeypatch.setenv("POSEAPP_MIRROR", server.url(""))
    path = fetch(DRIVE_URL.format("GOODID"), "m.pth", GOOD_SHA[:8], progress=False)
    assert path.read_bytes() == GOOD
    (hit,) = server.requests
    assert hit.path == "/files/download?id=GOODID&export=download&confirm=t" and hit.user_agent == "poseapp"


# ---------------------------------------------------------------------------------------------------------------
# Google Drive (gdown, against the local server's imitation of Drive)
# ---------------------------------------------------------------------------------------------------------------


def test_drive_large_file_confirmation_page_then_verified_and_renamed(drive, cache):
    seen: list[tuple[int, int | None]] = []
    path = fetch(DRIVE_URL.format("GOODID"), "m.pth", GOOD_SHA[:8], progress=lambda d, t: seen.append((d, t)))
    assert path == cache / "m.pth" and path.read_bytes() == GOOD
    assert files_in(cache) == ["m.pth", "m.pth.sha256"]
    assert [(h.host, h.path.split("&uuid=")[0], h.status) for h in drive.requests] == [
        ("drive.google.com", "/uc?id=GOODID", 303),  # gdown starts from the file id
        ("drive.usercontent.google.com", "/download?id=GOODID&export=download", 200),  # the warning page
        ("drive.usercontent.google.com", "/download?id=GOODID&export=download&confirm=t", 200),  # the form's target
    ]
    assert "&uuid=" in drive.requests[-1].path and drive.requests[-1].user_agent.startswith("Mozilla")  # gdown's
    assert seen[-1] == (len(GOOD), len(GOOD))


def test_drive_wrong_bytes_are_rejected_and_deleted(drive, cache):
    url = DRIVE_URL.format("WRONGID")
    with pytest.raises(DownloadError) as e:
        fetch(url, "m.pth", GOOD_SHA[:8], progress=False)
    assert f"sha256 mismatch for {url}: expected prefix {GOOD_SHA[:8]}, got {WRONG_SHA}" in str(e.value)
    assert files_in(cache) == []


def test_drive_quota_page_names_the_url_and_the_fix(drive, cache, sleeps):
    url = DRIVE_URL.format("QUOTAID")
    with pytest.raises(DownloadError) as e:
        fetch(url, "m.pth", progress=False)
    msg = str(e.value)
    assert msg.startswith(f"Google Drive would not serve {url}: Too many users have viewed or downloaded this file")
    assert f"try again later, or download it in a browser and save it as {cache / 'm.pth'}" in msg
    assert "\n" not in msg and files_in(cache) == [] and sleeps == []  # not retried


def test_gdrive_hosts_decides_the_gdown_path(server, cache, monkeypatch):
    monkeypatch.setattr(hub.downloads, "GDRIVE_HOSTS", ("127.0.0.1",))
    assert fetch(server.url("good.pth"), "m.pth", GOOD_SHA[:8], progress=False).read_bytes() == GOOD
    assert server.requests[0].user_agent.startswith("Mozilla")  # gdown, not poseapp's own client
    with pytest.raises(DownloadError, match="answered a web page instead of the file"):
        fetch(server.url("page.pth"), "p.pth", progress=False)  # no hash known: the HTML check still catches it
    assert files_in(cache) == ["m.pth", "m.pth.sha256"]


def test_drive_through_gdown_is_quiet_without_progress(drive, cache, capfd):
    fetch(DRIVE_URL.format("GOODID"), "m.pth", GOOD_SHA[:8], progress=False)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


# ---------------------------------------------------------------------------------------------------------------
# fetch() and the cache
# ---------------------------------------------------------------------------------------------------------------


def test_fetch_downloads_into_the_cache_once(server, cache):
    path = fetch(server.url("good.pth"), "model-1.pth", GOOD_SHA[:8], progress=False)
    assert path == cache / "model-1.pth" and path.read_bytes() == GOOD
    assert len(server.requests) == 1
    assert fetch(server.url("good.pth"), "model-1.pth", GOOD_SHA[:8], progress=False) == path
    assert len(server.requests) == 1  # the second call is a cache hit


@pytest.mark.parametrize("prefix", [GOOD_SHA[:8], None])
def test_fetch_cache_hit_makes_no_request(server, cache, prefix):
    cache.mkdir(parents=True)
    (cache / "model.pth").write_bytes(GOOD)
    assert fetch(server.url("good.pth"), "model.pth", prefix) == cache / "model.pth"
    assert server.requests == []


def test_fetch_replaces_a_corrupt_cached_file(server, cache):
    cache.mkdir(parents=True)
    (cache / "model.pth").write_bytes(b"corrupt")
    path = fetch(server.url("good.pth"), "model.pth", GOOD_SHA[:8], progress=False)
    assert path.read_bytes() == GOOD and len(server.requests) == 1
    assert files_in(cache) == ["model.pth", "model.pth.sha256"]  # the stamp is new: see "cache stamps" below


def test_offline_and_absent_raises_with_the_fix(server, cache, monkeypatch):
    monkeypatch.setenv("POSEAPP_OFFLINE", "1")
    with pytest.raises(DownloadError) as e:
        fetch(server.url("good.pth"), "hrnet.pth", GOOD_SHA[:8], name="hrnet-w32_coco")
    msg = str(e.value)
    assert "hrnet.pth is not in the cache (offline: --offline or POSEAPP_OFFLINE)" in msg
    assert "run `python infer.py fetch hrnet-w32_coco` on a machine with internet" in msg
    assert f"copy the file to {cache / 'hrnet.pth'}" in msg
    assert server.requests == []


def test_offline_cache_hit_still_works(server, cache, monkeypatch):
    monkeypatch.setenv("POSEAPP_OFFLINE", "1")
    cache.mkdir(parents=True)
    (cache / "model.pth").write_bytes(GOOD)
    assert fetch(server.url("good.pth"), "model.pth", GOOD_SHA[:6]).read_bytes() == GOOD
    assert server.requests == []


def test_offline_refuses_a_drive_url_without_any_request(drive, cache, monkeypatch):
    monkeypatch.setenv("POSEAPP_OFFLINE", "1")
    with pytest.raises(DownloadError, match="m.pth is not in the cache \\(offline: --offline or POSEAPP_OFFLINE\\)"):
        fetch(DRIVE_URL.format("GOODID"), "m.pth", name="rtm_coco")
    assert drive.requests == []


def test_download_itself_refuses_offline(server, tmp_path, monkeypatch):
    monkeypatch.setenv("POSEAPP_OFFLINE", "1")
    for url in (server.url("good.pth"), DRIVE_URL.format("GOODID")):
        refused = f"offline \\(--offline or POSEAPP_OFFLINE\\): not downloading {re.escape(url)}"
        with pytest.raises(DownloadError, match=refused):
            download(url, tmp_path / "m.pth", progress=False)
    assert server.requests == [] and files_in(tmp_path) == []


def test_fetch_cache_argument_is_the_folder(server, cache, tmp_path):
    folder = tmp_path / "elsewhere"
    path = fetch(server.url("good.pth"), "m.pth", GOOD_SHA[:8], progress=False, cache=folder)
    assert path == folder / "m.pth" and path.read_bytes() == GOOD and not cache.exists()
    assert cached_path("m.pth", GOOD_SHA[:8], cache=str(folder)) == path and cached_path("m.pth") is None
    assert fetch(server.url("good.pth"), "m.pth", GOOD_SHA[:8], cache=folder) == path and len(server.requests) == 1


# ---------------------------------------------------------------------------------------------------------------
# cached_path() and cache stamps
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture
def hashes(monkeypatch) -> list[Path]:
    """The files hub re-hashes from disk (hub.sha256_of calls; downloads hash while streaming)."""
    calls: list[Path] = []
    real = hub.sha256_of

    def counting(path):
        calls.append(Path(path))
        return real(path)

    monkeypatch.setattr(hub.cache, "sha256_of", counting)
    return calls


@pytest.mark.parametrize("content, prefix, hit", [
    (GOOD, GOOD_SHA[:8], True), (GOOD, GOOD_SHA.upper(), True), (GOOD, None, True), (b"other", None, True),
    (WRONG, GOOD_SHA[:8], False), (None, GOOD_SHA[:8], False), (None, None, False),
], ids=["prefix", "full-upper", "no-prefix", "other-no-prefix", "corrupt", "absent", "absent-no-prefix"])
def test_cached_path(cache, content, prefix, hit):
    if content is not None:
        cache.mkdir(parents=True)
        (cache / "m.pth").write_bytes(content)
    assert cached_path("m.pth", prefix) == (cache / "m.pth" if hit else None)


def test_a_download_leaves_a_stamp_that_spares_the_rehash(server, cache, hashes):
    path = fetch(server.url("good.pth"), "m.pth", GOOD_SHA[:8], progress=False)
    st = path.stat()
    assert (cache / "m.pth.sha256").read_text() == f"{GOOD_SHA} {len(GOOD)} {st.st_mtime_ns}\n"
    for _ in range(3):
        assert fetch(server.url("good.pth"), "m.pth", GOOD_SHA[:8]) == path
        assert cached_path("m.pth", GOOD_SHA[:12]) == path
    assert hashes == [] and len(server.requests) == 1


def test_a_file_copied_by_hand_is_hashed_once_then_stamped(server, cache, hashes):
    cache.mkdir(parents=True)
    (cache / "m.pth").write_bytes(GOOD)
    assert fetch(server.url("good.pth"), "m.pth", GOOD_SHA[:8]) == cache / "m.pth"
    assert fetch(server.url("good.pth"), "m.pth", GOOD_SHA[:8]) == cache / "m.pth"
    assert len(hashes) == 1 and files_in(cache) == ["m.pth", "m.pth.sha256"] and server.requests == []


def test_a_touched_file_is_rehashed_and_the_stamp_refreshed(server, cache, hashes):
    path = fetch(server.url("good.pth"), "m.pth", GOOD_SHA[:8], progress=False)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert cached_path("m.pth", GOOD_SHA[:8]) == path and len(hashes) == 1
    assert (cache / "m.pth.sha256").read_text().split()[2] == str(st.st_mtime_ns + 10**9)
    assert cached_path("m.pth", GOOD_SHA[:8]) == path and len(hashes) == 1  # stamped again


def test_fetches_of_one_file_at_once_download_it_once(server, cache):
    """Processes sharing a cache (a node's Ray workers) fetch a file once: the others wait on its lock, then
    find it in the cache. Threads stand in for them (each opens the lock file itself, as a process does)."""
    import threading

    got: list[Path] = []
    threads = [threading.Thread(target=lambda: got.append(fetch(server.url("late-good.pth"), "m.pth", GOOD_SHA[:8],
                                                                  progress=False))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert got == [cache / "m.pth"] * 3 and (cache / "m.pth").read_bytes() == GOOD
    assert server.counts["late-good.pth"] == 1 and files_in(cache) == ["m.pth", "m.pth.sha256"]


def test_a_changed_file_is_rehashed_and_downloaded_again(server, cache, hashes):
    path = fetch(server.url("good.pth"), "m.pth", GOOD_SHA[:8], progress=False)
    path.write_bytes(WRONG)  # same size, new mtime
    assert cached_path("m.pth", GOOD_SHA[:8]) is None and not (cache / "m.pth.sha256").exists()
    assert fetch(server.url("good.pth"), "m.pth", GOOD_SHA[:8], progress=False).read_bytes() == GOOD
    assert len(server.requests) == 2 and len(hashes) == 2


@pytest.mark.parametrize("stamp", ["garbage", "", f"{WRONG_SHA} {{size}} {{mtime}}", f"{GOOD_SHA} 1 {{mtime}}"],
                         ids=["garbage", "empty", "other-digest", "other-size"])
def test_a_stamp_that_does_not_vouch_for_the_file_means_a_rehash(cache, hashes, stamp):
    cache.mkdir(parents=True)
    path = cache / "m.pth"
    path.write_bytes(GOOD)
    st = path.stat()
    (cache / "m.pth.sha256").write_text(stamp.format(size=st.st_size, mtime=st.st_mtime_ns))
    assert cached_path("m.pth", GOOD_SHA[:8]) == path and len(hashes) == 1
    assert (cache / "m.pth.sha256").read_text() == f"{GOOD_SHA} {st.st_size} {st.st_mtime_ns}\n"


def test_a_read_only_cache_still_hits_without_a_stamp(cache, monkeypatch):
    cache.mkdir(parents=True)
    (cache / "m.pth").write_bytes(GOOD)
    monkeypatch.setattr(Path, "write_text", lambda *a, **k: (_ for _ in ()).throw(PermissionError(13, "read-only")))
    assert cached_path("m.pth", GOOD_SHA[:8]) == cache / "m.pth" and files_in(cache) == ["m.pth"]


def test_poseapp_home_moves_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("POSEAPP_HOME", str(tmp_path / "elsewhere"))
    assert cache_dir() == tmp_path / "elsewhere"
    monkeypatch.delenv("POSEAPP_HOME")
    assert cache_dir() == ROOT / "weights"


def test_offline_flag_values(monkeypatch):
    for value, expected in [("1", True), ("true", True), ("YES", True), ("0", False), ("", False)]:
        monkeypatch.setenv("POSEAPP_OFFLINE", value)
        assert hub.is_offline() is expected


# ---------------------------------------------------------------------------------------------------------------
# hashes
# ---------------------------------------------------------------------------------------------------------------


def test_sha256_of_and_check_file_hash(tmp_path):
    f = tmp_path / "abc.bin"
    f.write_bytes(b"abc")
    digest = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # FIPS 180-2 test vector
    assert sha256_of(f) == digest
    assert check_file_hash(f, "ba7816bf") and check_file_hash(f, "BA7816BF") and check_file_hash(f, digest)
    assert not check_file_hash(f, "ba7816be")
    with pytest.raises(ValueError, match="hex digits"):
        check_file_hash(f, "not-hex")
