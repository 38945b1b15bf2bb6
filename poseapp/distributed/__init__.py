"""The same predict job on a Ray cluster: ``run_distributed(PredictOptions(...), RayOptions(...))``.

``python infer.py predict --ray [--ray-address ADDRESS] [--workers N] [--gpus-per-worker G]`` runs it from the
command line. The source is planned into tasks (``plan``: shards of images, videos, segments of long videos),
shared out on Ray Data to a pool of actors that each hold one detector and one pose model (``worker``),
written as shards with a manifest and merged into the files a single-process run writes (``shards``);
``resume`` skips what a run before finished. Ray is imported only when a run starts.

Example::

    from poseapp import PredictOptions
    from poseapp.distributed import RayOptions, run_distributed
    report = run_distributed(PredictOptions(source="frames/", save_json=True, save_media=False),
                             RayOptions(workers=2))
    print(report.done_inputs, report.failed_inputs, report.retried, report.outputs)
"""
from __future__ import annotations

from poseapp.distributed.plan import Plan, Task, plan_tasks
from poseapp.distributed.cluster import RayOptions, pool_shape
from poseapp.distributed.run import DistributedReport, run_distributed

__all__ = ["DistributedReport", "Plan", "RayOptions", "Task", "plan_tasks", "pool_shape", "run_distributed"]
