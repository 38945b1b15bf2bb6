"""``YoloV5Detector``: a classic yolov5 checkpoint (the seed's ``crowdhuman_yolov5m.pt``) as a box source, run
the way the seed's ``infer.py`` runs it: the frame in RGB, letterboxed to ``imgsz``, the network (float32,
Conv+BN fused), non-maximum suppression, the boxes back in image pixels and rounded."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from poseapp.boxes.base import DetectorError
from poseapp.results import Detections, Frame

log = logging.getLogger(__name__)

SEED_CONF, SEED_IOU = 0.4, 0.5
"""The seed's ``infer.py`` defaults (``--conf-thres``, ``--iou-thres``) for this detector."""


def is_classic_yolov5(path: str | Path) -> bool:
    """Whether ``path`` is a torch.save file whose pickle names yolov5's model class (read from its
    opcodes: nothing is built)."""
    from poseapp.boxes.yolov5.checkpoint import is_yolov5_checkpoint
    from poseapp.models.checkpoint import only_safe_globals

    path = Path(path)
    if not path.is_file() or path.suffix.lower() not in (".pt", ".pth"):
        return False
    try:
        with only_safe_globals([]):
            names = list(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception:  # not a zip: YoloDetector says what it is
        return False
    return is_yolov5_checkpoint(names)


class YoloV5Detector:
    """Boxes from a classic yolov5 checkpoint (v5.0-v7.0).

    Args:
        model: the checkpoint file.
        conf, iou: NMS thresholds (None: the seed's 0.4 and 0.5).
        max_det: most boxes per frame (at most 300, as yolov5's NMS).
        classes: class ids or names to keep (``person``, ``head`` for the CrowdHuman detector); None: all.
        device: torch device; half: float16 on CUDA.
        imgsz: the letterbox size (the seed's ``--img-size``).
    """

    def __init__(self, model: str | Path, *, conf: float | None = None, iou: float | None = None,
                 max_det: int = 300, classes: Sequence[int | str] | None = (0,), device: str = "cpu",
                 half: bool = False, imgsz: int = 640, **_ignored: object) -> None:
        from poseapp.boxes.rules import resolve_classes
        from poseapp.boxes.yolov5.checkpoint import read_yolov5_checkpoint
        from poseapp.boxes.yolov5.network import ArchitectureError, build_yolov5

        self.path = Path(model)
        checkpoint = read_yolov5_checkpoint(self.path)
        try:
            network = build_yolov5(checkpoint.yaml)
            network.load_state_dict(checkpoint.state_dict)
        except (ArchitectureError, RuntimeError) as e:
            raise DetectorError(f"detector model {self.path}: its yolov5 model cannot be rebuilt "
                                f"({' '.join(str(e).split())[:200]})") from e
        self.device = torch.device(device)
        self.half = bool(half) and self.device.type == "cuda"
        self.network = network.fuse().to(self.device).eval()
        if self.half:
            self.network.half()
        self.names = {i: n for i, n in enumerate(checkpoint.names)}
        self.conf = SEED_CONF if conf is None else float(conf)
        self.iou = SEED_IOU if iou is None else float(iou)
        self.max_det = int(max_det)
        self.imgsz = int(imgsz)
        self.classes = None if classes is None else tuple(resolve_classes(classes, self.names))
        log.info("yolov5 detector %s loaded (classes %s, conf %g, IoU %g)", self.path, checkpoint.names, self.conf,
                 self.iou)

    @property
    def class_names(self) -> dict[int, str]:
        return dict(self.names)

    def __call__(self, frames: Sequence[Frame]) -> list[Detections]:
        return [self.detect(f.image) for f in frames]

    @torch.no_grad()
    def detect(self, image: np.ndarray) -> Detections:
        """Boxes in one (H, W, 3) uint8 BGR image."""
        from poseapp.boxes.yolov5.processing import letterbox, non_max_suppression, to_image, to_tensor

        x = to_tensor(letterbox(np.ascontiguousarray(image[..., ::-1]), self.imgsz)).to(self.device)
        rows = self.network(x.half() if self.half else x)[0].float()
        det = non_max_suppression(rows, self.conf, self.iou, self.classes)[: self.max_det]
        if not len(det):
            return Detections.empty()
        boxes = to_image(det[:, :4], image.shape[:2], tuple(x.shape[-2:])).round()  # the seed rounds them
        return Detections(boxes.cpu().numpy().astype(np.float32), det[:, 4].cpu().numpy().astype(np.float32),
                          det[:, 5].cpu().numpy().astype(np.int64))


CLASSIC_DETECTORS = {  # name -> (URL, file name in the weights cache)
    "crowdhuman-yolov5m": ("https://drive.google.com/uc?id=1gglIwqxaH2iTvy6lZlXuAcMpd_U0GCUb", "crowdhuman_yolov5m.pt"),
}
"""Classic yolov5 detectors poseapp can fetch by name: the seed's CrowdHuman YOLOv5m (Google Drive; no hash is
published, so a download is vetted by reading it weights-only before it gets its name)."""


def classic_detector_name(model: str | Path) -> str | None:
    """The ``CLASSIC_DETECTORS`` name ``model`` stands for (the name, or its file's bare name), else None."""
    text = str(model).strip()
    for name, (_, filename) in CLASSIC_DETECTORS.items():
        if text in (name, filename):
            return name
    return None


def fetch_classic_detector(name: str, *, cache: Path | None = None, offline: bool | None = None) -> Path:
    """The classic detector ``name`` in the weights cache, downloaded through ``poseapp.hub`` on first use and
    read weights-only (``read_yolov5_checkpoint``) before it gets its final name."""
    from poseapp import hub
    from poseapp.boxes.yolo_checkpoint import NotACheckpointError, UnsafeCheckpointError
    from poseapp.boxes.yolov5.checkpoint import read_yolov5_checkpoint

    url, filename = CLASSIC_DETECTORS[name]

    def vet(part: Path) -> None:
        try:
            read_yolov5_checkpoint(part)
        except (NotACheckpointError, UnsafeCheckpointError) as e:
            raise DetectorError(f"the download of {hub.mirror_url(url)} was deleted: {e.reason} (not the yolov5 "
                                "checkpoint it should be: check POSEAPP_MIRROR)") from e

    return hub.fetch(url, filename, None, name=name, cache=cache, check=vet, offline=offline)
