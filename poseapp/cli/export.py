"""``python infer.py export MODEL``: parsing and printing only (``poseapp.exporting`` does the work)."""
from __future__ import annotations

import click

from poseapp.cli.common import configure_logging, fail, offline_from_env, option_flags


@click.command("export")
@click.argument("model")
@click.option("--pose-arch", "arch", default=None, help="For a checkpoint path: the zoo name whose recipe it follows "
              "(default: the zoo entry whose file name it bears).")
@click.option("--format", "fmt", default=None, type=click.Choice(["onnx", "openvino"]),
              show_default="from --out's suffix (.xml: openvino), else onnx",
              help="onnx: one .onnx file (ONNX Runtime, OpenVINO, TensorRT...); openvino: an IR, .xml + .bin.")
@click.option("--out", default=None, type=click.Path(), help="File to write (NAME.onnx / NAME.xml; an existing one "
              "is replaced) or a folder, made if need be (default: <model name>.onnx|.xml here).")
@click.option("--precision", default="fp32", show_default=True, type=click.Choice(["fp32", "bf16"]),
              help="Recorded in the file: what it runs at unless --precision says otherwise (weights stay fp32).")
@click.option("--offline", is_flag=True, help="No network (as POSEAPP_OFFLINE=1): zoo weights must be in the cache.")
@click.option("--verbose", "-v", is_flag=True, help="Log details; show tracebacks on errors.")
def export(model: str, arch: str | None, fmt: str, out: str | None, precision: str, offline: bool,
           verbose: bool) -> None:
    """Export a zoo model or checkpoint to ONNX or OpenVINO, its recipe inside (input size, normalisation,
    codec, keypoints, flip pairs, crop rule), so that --pose-model FILE runs it with no --pose-arch.

    \b
      python infer.py export rtmpose-m_coco-256x192
      python infer.py export ckpt.pth --pose-arch hrnet-w32_coco-256x192 --format openvino --out models/
      python infer.py --source photo.jpg --pose-model rtmpose-m_coco-256x192.onnx

    Prints the file's path; the export is checked against the PyTorch network on a random batch.
    """
    from poseapp.errors import PoseAppError
    from poseapp.exporting import export_model

    configure_logging(verbose)
    try:
        done = export_model(model, arch=arch, format=fmt, out=out, precision=precision,
                            offline=offline or offline_from_env())
    except PoseAppError as e:
        fail(e.render({**option_flags(export), "model": "MODEL", "format": "--format", "out_dir": "--out"}), verbose)
    click.echo(f"{done.path}  ({done.recipe.name}, {done.precision}; outputs within {done.max_difference:.1e} of "
               f"the PyTorch network's)")
