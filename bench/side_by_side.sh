#!/usr/bin/env bash
# poseapp against MMPose 1.3.2 side by side (../shared/peers/side_by_side.py), one JSON line per setting, on the
# same checkpoint, images and boxes in alternating rounds. The table in bench/README.md comes from a run of this.
#   bash ../shared/peers/setup_mmpose.sh /tmp/venv-mmpose      (once, 3-5 min)
#   bash bench/side_by_side.sh /tmp/venv-mmpose/bin/python runs/side_by_side.jsonl
set -euo pipefail
MMPOSE_PYTHON=${1:?the python of the venv setup_mmpose.sh built}
OUT=${2:-runs/side_by_side.jsonl}
ROUNDS=${ROUNDS:-5}
mkdir -p "$(dirname "$OUT")"
: > "$OUT"
export POSEAPP_HOME=${POSEAPP_HOME:-$(mktemp -d)}  # the exports and the auto probe's choice, apart from weights/
run() { python ../shared/peers/side_by_side.py --mmpose-python "$MMPOSE_PYTHON" --rounds "$ROUNDS" --json /dev/stdout "$@" \
        | tail -1 | tee -a "$OUT"; }
run --family hrnet                                                   # backend auto, fp32 (the defaults)
run --family hrnet --no-flip
run --family res50
run --family rtmpose
run --family rle
run --family dark
run --family hrnet --poseapp-kwargs '{"backend": "torch"}'
run --family hrnet --poseapp-kwargs '{"backend": "onnxruntime"}'
run --family hrnet --poseapp-kwargs '{"backend": "openvino", "precision": "bf16"}'
run --family rtmpose --poseapp-kwargs '{"backend": "openvino", "precision": "bf16"}'
