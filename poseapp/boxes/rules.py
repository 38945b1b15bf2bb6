"""Which boxes suit a pose model's data set (the one table ``_BOX_RULES``), and detector class names to ids."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from poseapp.errors import suggest

PERSON = (0,)
COCO_ANIMALS = tuple(range(14, 24))  # bird, cat, dog, horse, sheep, cow, elephant, bear, zebra, giraffe
_COCO_NAMES = {0: "person", 14: "bird", 15: "cat", 16: "dog", 17: "horse", 18: "sheep", 19: "cow", 20: "elephant",
               21: "bear", 22: "zebra", 23: "giraffe"}  # the COCO classes the table below names


@dataclass(frozen=True)
class BoxRule:
    """The boxes a pose model trained on one data set gets unless the user picks others (``--boxes``,
    ``--det-classes``, ``--face-from``).

    Attributes:
        title: the data set's name in help texts.
        classes: COCO class ids (0-based, ultralytics order) to keep from the detector; None: no COCO class
            fits, the box is the whole frame.
        face: a face data set: the box is the whole frame, or a face box derived from a person model's head
            keypoints when the user names one (``FaceFromPose``).
    """

    title: str
    classes: tuple[int, ...] | None
    face: bool = False

    @property
    def kind(self) -> str:
        """``person``, ``animals``, ``whole frame`` or ``face``."""
        if self.face:
            return "face"
        if self.classes is None:
            return "whole frame"
        return "person" if self.classes == PERSON else "animals"

    @property
    def class_names(self) -> list[str]:
        """The COCO names of ``classes`` (empty for the whole frame)."""
        return [_COCO_NAMES[c] for c in self.classes or ()]

    @property
    def summary(self) -> str:
        """A short form for tables: ``person``, ``animals (cat,dog,horse,sheep,cow)``, ``animals (bird,cat,dog,...)``,
        ``whole frame``, ``face``."""
        if self.kind != "animals":
            return self.kind
        names = self.class_names
        return f"animals ({','.join(names) if len(names) <= 5 else ','.join(names[:3]) + ',...'})"


_BOX_RULES: dict[str, BoxRule] = {  # keys: the zoo's ``dataset`` values
    "coco": BoxRule("COCO", PERSON),
    "mpii": BoxRule("MPII", PERSON),
    "crowdpose": BoxRule("CrowdPose", PERSON),
    "posetrack18": BoxRule("PoseTrack18", PERSON),
    "body8": BoxRule("Body8", PERSON),  # RTMPose's merge of 8 human data sets
    "deepfashion_upper": BoxRule("DeepFashion upper", PERSON),
    "deepfashion_lower": BoxRule("DeepFashion lower", PERSON),
    "deepfashion_full": BoxRule("DeepFashion full", PERSON),
    "deepfashion2": BoxRule("DeepFashion2", PERSON),
    "animalpose": BoxRule("AnimalPose", (15, 16, 17, 18, 19)),  # cat, dog, horse, sheep, cow
    "ap10k": BoxRule("AP-10K", COCO_ANIMALS),
    "locust": BoxRule("Locust", None),  # centred single-animal crops: the whole frame is the box
    "zebra": BoxRule("Zebra", None),
    "animalkingdom": BoxRule("Animal Kingdom", None),  # 850 species: most have no COCO class
    "wflw": BoxRule("WFLW", None, face=True),  # no COCO face class: the whole frame, or --face-from
}
_ALIASES = {"ak": "animalkingdom", "posetrack": "posetrack18"}


def box_rules() -> dict[str, BoxRule]:
    """Every data set's default boxes, in table order (aliases left out)."""
    return dict(_BOX_RULES)


def box_rule_for(dataset: str) -> BoxRule:
    """The default boxes of a pose model trained on ``dataset`` (the zoo's ``dataset`` field: ``coco``,
    ``ap10k``, ``wflw``...; any ``deepfashion_*`` is a person). Raises UnknownNameError (with close names)
    for an unknown data set."""
    key = dataset.strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key in _BOX_RULES:
        return _BOX_RULES[key]
    if key.startswith("deepfashion_"):
        return BoxRule(dataset, PERSON)
    raise suggest(dataset, sorted([*_BOX_RULES, *_ALIASES]), "data set")


def detector_classes_for(dataset: str) -> tuple[int, ...] | None:
    """The 0-based COCO class ids (ultralytics order) to keep for a pose model trained on ``dataset``.

    None means no COCO class fits (Locust, Zebra, Animal Kingdom, and faces): use the whole frame as the box
    by default. See ``box_rule_for``.
    """
    return box_rule_for(dataset).classes


def resolve_classes(names: Iterable[str | int], class_names: Mapping[int, str]) -> list[int]:
    """Turn ``--det-classes person,dog`` or ``0,16`` (or a mix) into class ids of ``class_names``.

    Names match case-insensitively, with ``_`` standing for a space (``traffic_light``). Duplicates are
    dropped, order kept. Raises UnknownNameError for an unknown name (suggesting close ones) or an id the
    model does not have.
    """
    by_name = {_norm_class(n): i for i, n in class_names.items()}
    ids: list[int] = []
    for item in names:
        text = str(item).strip()
        if not text:
            continue
        if text.lstrip("-").isdigit():
            cid = int(text)
            if class_names and cid not in class_names:
                raise suggest(text, [str(i) for i in sorted(class_names)], "detector class id")
        elif _norm_class(text) in by_name:
            cid = by_name[_norm_class(text)]
        else:
            raise suggest(text, list(class_names.values()), "detector class")
        if cid not in ids:
            ids.append(cid)
    return ids


def _norm_class(name: str) -> str:
    return name.strip().lower().replace("_", " ")
