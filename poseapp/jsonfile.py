"""The one JSON loader for files a user passes (boxes, annotations, predictions): a one-line error naming
the file and what is wrong, raised as the caller's error type."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from poseapp.errors import PoseAppError


def read_json(path: str | Path, what: str, error: type[PoseAppError] = PoseAppError) -> Any:
    """The parsed JSON document at ``path``; ``error`` (naming ``what`` and the file) when it is absent,
    unreadable, not JSON, or JSON Python cannot hold (an integer over 4300 digits, nesting deeper than its
    stack)."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError as e:
        raise error(f"{what} {path} does not exist (file not found; check the path)") from e
    except IsADirectoryError as e:
        raise error(f"{what} {path} is a folder: pass the JSON file itself") from e
    except (OSError, UnicodeDecodeError) as e:
        raise error(f"cannot read {what} {path}: {e}") from e
    except json.JSONDecodeError as e:
        raise error(f"{what} {path} is not valid JSON: {e}") from e
    except (ValueError, RecursionError) as e:
        why = "nested too deeply" if isinstance(e, RecursionError) else e
        raise error(f"{what} {path} is not valid JSON as Python reads it: {why}") from e
