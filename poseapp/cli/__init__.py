"""Command line: parsing and wiring only (common, predict, zoo, eval). ``python infer.py --source X`` runs ``predict``.

Only poseapp.cli prints, draws progress bars and chooses exit codes: 0 all good, 1 some inputs failed
(listed in the summary, the rest processed), 2 a usage or input error (one line, no traceback unless
--verbose), 130 interrupted (Ctrl-C), 143 SIGTERM, 129 SIGHUP: a signal ends a run as Ctrl-C does,
with what was processed saved and the summary printed.
"""
from __future__ import annotations

import click

from poseapp import __version__
from poseapp.cli.common import DefaultGroup
from poseapp.cli.eval import eval_command
from poseapp.cli.export import export
from poseapp.cli.predict import predict
from poseapp.cli.zoo import fetch, models


@click.group(cls=DefaultGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="poseapp")
def main() -> None:
    """Top-down pose estimation: YOLO finds people or animals, a pose model finds their keypoints.

    \b
      python infer.py --source photo.jpg              annotated photo in runs/predict/
      python infer.py --source photos/ --json         a folder, keypoints in predictions.json
      python infer.py --source clip.mp4               annotated video + JSON Lines per frame
      python infer.py --source webcam:0 --show        webcam in a live window (q quits)
      python infer.py models                          the model zoo (models info NAME: one model)
      python infer.py fetch hrnet-w32_coco-256x192    download weights (for offline use)
      python infer.py eval --model NAME --ann A.json  the published metric on an annotated data set
      python infer.py export NAME --format onnx       ONNX/OpenVINO file carrying its recipe

    Without a sub-command the arguments go to `predict` (python infer.py predict --help).
    """


main.add_command(predict)
main.add_command(models)
main.add_command(fetch)
main.add_command(eval_command)
main.add_command(export)
