"""hub: downloads from a real local HTTP server (127.0.0.1 only), hash checks, cache and offline rules."""
from __future__ import annotations

import hashlib
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT

from poseapp import hub
from poseapp.hub import DownloadError, cache_dir, check_file_hash, download, fetch, sha256_of

GOOD = np.random.default_rng(0).integers(0, 256, 3 * (1 << 20) + 123, dtype=np.uint8).tobytes()
GOOD_SHA = hashlib.sha256(GOOD).hexdigest()
WRONG = GOOD[:-1] + bytes([GOOD[-1] ^ 0xFF])  # same size, one byte off
WRONG_SHA = hashlib.sha256(WRONG).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    """Routes: /good.pth, /wrong.pth (other bytes), /short.pth (closes early), /slow.pth, /404, /500."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.server.requests.append(self.path)  # type: ignore[attr-defined]
        name = self.path.rsplit("/", 1)[-1]
        if name == "good.pth":
            self._send(GOOD)
        elif name == "wrong.pth":
            self._send(WRONG)
        elif name == "short.pth":
            self._send(GOOD[:1000], length=len(GOOD))
        elif name == "slow.pth":
            time.sleep(1.5)  # longer than the client's timeout, bounded
            self._send(GOOD[:10])
        elif name == "500":
            self.send_error(500, "Internal Server Error")
        else:
            self.send_error(404, "Not Found")

    def _send(self, body: bytes, length: int | None = None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
            pass

    def log_message(self, *args) -> None:  # keep the test output clean
        pass


@pytest.fixture
def server():
    """A ThreadingHTTPServer on 127.0.0.1:<free port>; ``server.url(name)``; ``server.requests`` lists paths."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.requests = []  # type: ignore[attr-defined]
    httpd.url = lambda name: f"http://127.0.0.1:{httpd.server_address[1]}/files/{name}"  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    """Every test gets its own POSEAPP_HOME and starts online."""
    home = tmp_path / "cache"
    monkeypatch.setenv("POSEAPP_HOME", str(home))
    monkeypatch.delenv("POSEAPP_OFFLINE", raising=False)
    return home


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


def test_truncated_body_raises_and_leaves_nothing(server, tmp_path):
    with pytest.raises(DownloadError, match=r"short\.pth failed: .*(got 1000 of \d+ bytes|IncompleteRead)"):
        download(server.url("short.pth"), tmp_path / "m.pth", progress=False)
    assert files_in(tmp_path) == []


def test_timeout_raises_naming_the_url(server, tmp_path):
    t0 = time.monotonic()
    with pytest.raises(DownloadError, match=r"slow\.pth failed: .*timed out"):
        download(server.url("slow.pth"), tmp_path / "m.pth", progress=False, timeout=0.3)
    assert time.monotonic() - t0 < 1.4
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
    assert files_in(cache) == ["model.pth"]


def test_offline_and_absent_raises_with_the_fix(server, cache, monkeypatch):
    monkeypatch.setenv("POSEAPP_OFFLINE", "1")
    with pytest.raises(DownloadError) as e:
        fetch(server.url("good.pth"), "hrnet.pth", GOOD_SHA[:8], name="hrnet-w32_coco")
    msg = str(e.value)
    assert "hrnet.pth is not in the cache (POSEAPP_OFFLINE is set)" in msg
    assert "run `python infer.py fetch hrnet-w32_coco` on a machine with internet" in msg
    assert f"copy the file to {cache / 'hrnet.pth'}" in msg
    assert server.requests == []


def test_offline_cache_hit_still_works(server, cache, monkeypatch):
    monkeypatch.setenv("POSEAPP_OFFLINE", "1")
    cache.mkdir(parents=True)
    (cache / "model.pth").write_bytes(GOOD)
    assert fetch(server.url("good.pth"), "model.pth", GOOD_SHA[:6]).read_bytes() == GOOD
    assert server.requests == []


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
