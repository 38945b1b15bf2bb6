"""The preview window (``--show``): cv2.imshow with an FPS overlay, after checking a display answers."""
from __future__ import annotations

import logging
import os
import re
import socket
import sys
import time

import numpy as np

from poseapp.errors import OutputError, arg

logger = logging.getLogger(__name__)


def _x_reachable(display: str, timeout: float = 1.0) -> bool:
    """Whether an X server answers at ``display`` (``:0``, ``unix:1``, ``host:10.0``); True when the name
    cannot be parsed (OpenCV then judges). A window on an X display that does not answer aborts the whole
    process inside Qt, so it is worth the check."""
    match = re.fullmatch(r"(?P<host>[^:]*):(?P<n>\d+)(\.\d+)?", display)
    if match is None:
        return True
    host, number = match["host"], int(match["n"])
    if host in ("", "unix"):
        targets = [(socket.AF_UNIX, f"/tmp/.X11-unix/X{number}"), (socket.AF_UNIX, f"\0/tmp/.X11-unix/X{number}")]
    else:
        targets = [(socket.AF_INET, (host, 6000 + number))]
    for family, address in targets:
        try:
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout)
                sock.connect(address)
                return True
        except OSError:
            continue
    return False


def _no_display_reason() -> str | None:
    """Why no window can open here (None when a display seems available). OpenCV's window (Qt, xcb)
    needs an X display on Linux: a Wayland session offers one through Xwayland, in DISPLAY."""
    if not sys.platform.startswith("linux"):
        return None
    display = os.environ.get("DISPLAY")
    if not display:
        return "DISPLAY is not set" + (" (a Wayland session needs Xwayland)" if os.environ.get("WAYLAND_DISPLAY")
                                       else "")
    if not _x_reachable(display):
        return f"no X server answers at DISPLAY={display}"
    return None


class Window:
    """A preview window (cv2.imshow) with an FPS overlay; ``show`` returns False once q or Esc is pressed.

    Raises:
        OutputError: there is no display, or OpenCV was built without a GUI backend (headless).
    """

    def __init__(self, title: str = "poseapp") -> None:
        reason = _no_display_reason()
        if reason is None:
            import cv2  # the GUI backend loads with the first window

            try:
                cv2.namedWindow(title, cv2.WINDOW_NORMAL)
            except cv2.error as e:
                logger.debug("namedWindow failed: %s", e)
                reason = "OpenCV has no GUI backend (headless build)"
        if reason is not None:
            raise OutputError(f"{arg('show')} needs a display: none found ({reason}); drop {arg('show')} or run "
                              "with a display")
        self.title = title
        self._last: float | None = None
        self.fps: float | None = None
        self._open = True

    def _tick(self) -> None:
        """Update the smoothed frames-per-second estimate."""
        now = time.monotonic()
        if self._last is not None and now > self._last:
            fps = 1.0 / (now - self._last)
            self.fps = fps if self.fps is None else 0.9 * self.fps + 0.1 * fps
        self._last = now

    def show(self, image: np.ndarray) -> bool:
        """Show (H, W, 3) uint8 BGR ``image`` (not modified); False when the user asked to quit."""
        import cv2

        self._tick()
        shown = image
        if self.fps is not None:
            shown = image.copy()
            cv2.putText(shown, f"{self.fps:.1f} FPS", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 0), 4,
                        cv2.LINE_AA)
            cv2.putText(shown, f"{self.fps:.1f} FPS", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2,
                        cv2.LINE_AA)
        cv2.imshow(self.title, shown)
        key = cv2.waitKey(1) & 0xFF
        return key not in (ord("q"), 27)

    def close(self) -> None:
        if self._open:
            import cv2

            self._open = False
            try:
                cv2.destroyWindow(self.title)
            except cv2.error as e:
                logger.debug("destroyWindow failed: %s", e)

    def __enter__(self) -> "Window":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
