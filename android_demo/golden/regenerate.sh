#!/usr/bin/env bash
# Regenerate the Kotlin core's goldens (android_demo/core/src/test/resources/golden) from a small
# trained student: train it (model.yaml beside this script: face_pose.yaml on a few CPU minutes'
# budget), export its int8 TFLite once more with int8 input/output tensors (the app takes both), and
# write the goldens with its measured test MAE as the pose tolerance's base. Run from anywhere, in the
# project's Python environment; RUNS (default: runs/ in the repository) holds the run folder.
#   bash android_demo/golden/regenerate.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
runs="${RUNS:-$root/runs}"
python -m pipeline run android_demo/golden/model.yaml --out "$runs"
python -m pipeline export "$runs/golden_face_pose" --formats tflite_int8 --int8-io
python -m exporters.golden "$runs/golden_face_pose" android_demo/core/src/test/resources/golden
