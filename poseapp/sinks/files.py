"""Writing files so that nothing is lost: temporary names, the one atomic write, the run folder, stale temps.

Every output is written to a temporary name in its destination folder, then ``os.replace``d onto its final
name, so no half-written file ever carries the final name. A temporary name carries the writing process's id
(``.<name>.poseapp<pid>-<host>.<random><suffix>``), so :func:`remove_stale_temps` can tell the debris of a
killed run from the files of a live one. Write errors become an OutputError naming the file.
"""
from __future__ import annotations

import errno
import logging
import os
import re
import socket
import tempfile
from pathlib import Path
from typing import IO, Callable, Iterable

from poseapp.errors import OutputError, PoseAppError, arg

logger = logging.getLogger(__name__)


REASONS = {
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "read-only file system",
    errno.ENOSPC: "no space left on device",
    errno.ENOTDIR: "a parent path is a file, not a folder",
    errno.EEXIST: "a file of that name exists",
}


def reason(e: OSError) -> str:
    """A short, lower-case reason for an OSError."""
    return REASONS.get(e.errno or 0, (e.strerror or str(e)).lower())


def output_error(path: Path, e: OSError) -> OutputError:
    return OutputError(f"cannot write to '{path}': {reason(e)} (choose another {arg('out_dir')})")


def _file_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give: 0o666 less the process umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _host_tag() -> str:
    """This machine's name, shortened to what a file name can carry (temp files on a shared disk)."""
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:16]


_TEMP_NAME = re.compile(r"^\..*\.poseapp(\d+)-([A-Za-z0-9]{0,16})\.[A-Za-z0-9_]{8}(\.[A-Za-z0-9]+)?$")


def temp_path(path: Path, suffix: str = ".tmp") -> Path:
    """A fresh hidden temporary file next to ``path`` (created empty, so the name is ours), named
    ``.<name>.poseapp<pid>-<host>.<random><suffix>`` (the name cut to 100 characters, so a long final
    name still fits the file system's limit).

    mkstemp creates it 0600; it gets the usual mode so the renamed output is readable like any other.
    """
    prefix = f".{path.name[:100]}.poseapp{os.getpid()}-{_host_tag()}."
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)
    os.close(fd)
    os.chmod(name, _file_mode())
    return Path(name)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: alive, someone else's; anything else: assume alive
        return True
    return True


def remove_stale_temps(folders: Iterable[Path]) -> list[Path]:
    """Delete the temporary files that runs killed before they could finish (SIGKILL, power loss) left in
    ``folders`` (not their sub-folders): those written on this machine by a process that is gone. Files of
    a live process, or of another machine sharing the disk, are left alone.

    Returns the paths removed (for the summary)."""
    removed: list[Path] = []
    host = _host_tag()
    for folder in dict.fromkeys(Path(f) for f in folders):
        try:
            names = [e.name for e in os.scandir(folder) if e.is_file(follow_symlinks=False)]
        except OSError:
            continue
        for name in names:
            match = _TEMP_NAME.match(name)
            if match is None or match.group(2) != host or _pid_alive(int(match.group(1))):
                continue
            path = Path(folder) / name
            try:
                path.unlink()
                removed.append(path)
            except OSError as e:
                logger.warning("cannot remove stale temporary file %s: %s", path, reason(e))
    return removed


def publish(tmp: Path, path: Path) -> None:
    """Rename a finished temporary file onto its final name (OutputError naming ``path`` if that fails)."""
    try:
        os.replace(tmp, path)
    except OSError as e:
        raise output_error(path, e) from e


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Write ``path`` through ``write(file)`` on a temporary file in the same folder, then rename.

    Raises:
        OutputError: the folder is not writable (the temporary file is removed).
    """
    path = Path(path)
    try:
        tmp = temp_path(path)
    except OSError as e:
        raise output_error(path, e) from e
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise output_error(path, e) from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


class Closing:
    """A writer as a context manager: ``__exit__`` closes it (finalising what it has). When an exception
    is already on its way (Ctrl-C, SIGTERM, an earlier write error), that one is reported: a failure to
    finalise is added to its message (one line), or logged when it is an interruption."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> None:
        try:
            self.close()
        except OutputError as e:
            if exc is None:
                raise
            if isinstance(exc, PoseAppError) and len(exc.args) == 1:  # one line still tells both
                exc.args = (f"{exc.args[0]}; {e.args[0]}",)  # markers kept: rendered where it is shown
            else:
                logger.warning("%s", e)


def next_run_dir(base: Path = Path("runs/predict"), exist_ok: bool = False) -> Path:
    """Create and return the output folder: ``base``, else ``base2``, ``base3``... (the first free one).

    With ``exist_ok`` the folder is ``base`` itself, existing or not.

    Raises:
        OutputError: the folder cannot be created or written to (checked by creating a file in it).
    """
    base = Path(base)
    n = 1
    while True:
        target = base if n == 1 or exist_ok else base.with_name(f"{base.name}{n}")
        try:
            target.mkdir(parents=True, exist_ok=exist_ok)
            break
        except FileExistsError as e:
            if exist_ok:  # exists, but not as a folder
                raise OutputError(f"cannot write to '{target}': it exists and is not a folder "
                                  f"(choose another {arg('out_dir')})") from e
            n += 1
        except OSError as e:
            raise output_error(target, e) from e
    try:
        with tempfile.TemporaryFile(dir=target):
            pass
    except OSError as e:
        raise output_error(target, e) from e
    return target
