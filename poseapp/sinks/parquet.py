"""``--parquet``: keypoints as an Apache Parquet table, a row per frame and instance (pyarrow, which Ray Data
brings). The columns are the CSV table's with the keypoints as lists: ``source``, ``frame``, ``page`` and
``timestamp`` (null where a frame has none), ``width``, ``height``, ``track_id`` (null: none), ``bbox`` (x1, y1,
x2, y2), ``bbox_score``, ``keypoints`` (K [x, y] pairs), ``keypoint_scores`` (K), ``keypoints_raw`` (the model's,
with smoothing; else null). A frame with no instance has no row. :func:`concat_tables` joins shards.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from poseapp.errors import PoseAppError, arg
from poseapp.results import FrameResult
from poseapp.sinks.files import Closing, atomic_write

COLUMNS = ("source", "frame", "page", "timestamp", "width", "height", "track_id", "bbox", "bbox_score", "keypoints",
           "keypoint_scores", "keypoints_raw")


def _schema() -> Any:
    import pyarrow as pa

    points = pa.list_(pa.list_(pa.float64(), 2))
    return pa.schema([("source", pa.string()), ("frame", pa.int64()), ("page", pa.int32()),
                      ("timestamp", pa.float64()), ("width", pa.int32()), ("height", pa.int32()),
                      ("track_id", pa.int64()), ("bbox", pa.list_(pa.float64(), 4)), ("bbox_score", pa.float64()),
                      ("keypoints", points), ("keypoint_scores", pa.list_(pa.float64())), ("keypoints_raw", points)],
                     metadata={"keypoint_set": ""})


class ParquetWriter(Closing):
    """Collects the rows of a run (or a task) and writes one Parquet file atomically on close (also after an
    exception: what was collected); no file when no instance was written. The keypoint set's name and
    keypoint names are in the file's metadata."""

    needs_image = False

    def __init__(self, path: Path) -> None:
        import importlib.util

        if importlib.util.find_spec("pyarrow") is None:  # a clear line now, not an ImportError at the end
            raise PoseAppError(f"{arg('parquet')} needs pyarrow, which is not installed: pip install -r "
                               f"requirements.txt (or pip install pyarrow), or drop {arg('parquet')}")
        self.path = Path(path)
        self._columns: dict[str, list] = {name: [] for name in COLUMNS}
        self._names: tuple[str, ...] | None = None
        self._set = ""
        self._closed = False

    def write(self, result: FrameResult, annotated: np.ndarray | None = None) -> None:
        f = result.frame
        h, w = f.shape
        if self._names is None:
            self._names, self._set = tuple(result.poses.keypoint_set.names), result.poses.keypoint_set.name
        for inst in result:
            row = {"source": f.source, "frame": f.index, "page": f.page, "timestamp": f.timestamp, "width": w,
                   "height": h, "track_id": inst.track_id, "bbox": [float(v) for v in inst.box],
                   "bbox_score": float(inst.box_score), "keypoints": inst.keypoints.astype(float).tolist(),
                   "keypoint_scores": inst.scores.astype(float).tolist(),
                   "keypoints_raw": None if inst.keypoints_raw is None else inst.keypoints_raw.astype(float).tolist()}
            for name in COLUMNS:
                self._columns[name].append(row[name])

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self._columns["frame"]:
            return
        import json

        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = _schema().with_metadata({"keypoint_set": self._set, "keypoint_names": json.dumps(self._names)})
        table = pa.table(self._columns, schema=schema)
        atomic_write(self.path, lambda f: pq.write_table(table, f))


def concat_tables(path: Path, shards: list[Path]) -> None:
    """One Parquet file from ``shards`` in order (their rows, the first's metadata), written atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = [pq.read_table(p) for p in shards]
    table = pa.concat_tables(tables).replace_schema_metadata(tables[0].schema.metadata)
    atomic_write(Path(path), lambda f: pq.write_table(table, f))
