#!/usr/bin/env bash
# The whole dgcn chain on a dataset in the `folder` layout, with tiny settings
# that finish in a few minutes on a CPU. Usage:
#
#   bash examples/custom_dataset/run.sh [WORK_DIR]        (default /tmp/dgcn-custom)
#
# DGCN selects the command (default: dgcn on PATH), PYTHON the interpreter for
# make_folder.py (default: the one next to DGCN, else python3). To use your own
# data, set DATA to its folder: the make_folder.py step is then skipped.
set -euo pipefail

DGCN=${DGCN:-dgcn}
WORK=${1:-/tmp/dgcn-custom}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
if [[ -z "${PYTHON:-}" ]]; then
  dgcn_dir=$(dirname "$(command -v "$DGCN")")
  if [[ -x "$dgcn_dir/python" ]]; then PYTHON="$dgcn_dir/python"; else PYTHON=python3; fi
fi

OUT=${DATA:-$WORK/data}
if [[ -z "${DATA:-}" ]]; then
  (cd "$REPO" && "$PYTHON" "$HERE/make_folder.py" "$OUT")
fi

DS=(--dataset folder --data-root "$OUT")
DEV=(--device cpu)
# A tiny network from scratch: fine for 96-px toy images, far too small for real photos
# (there, use --backbone resnet101 --weights imagenet and the default crop/epochs).
NET=(--backbone tiny --weights none --crop 64 --batch-size 8 --lr 0.05 --warmup 2 --seed 0)

echo "== cam: train the classifier on image-level labels, write CAMs"
"$DGCN" cam "${DS[@]}" "${DEV[@]}" "${NET[@]}" --epochs 2 --scales 1 \
  --out "$WORK/cam" --overwrite

echo "== saliency-bg: background cue"
"$DGCN" saliency-bg "${DS[@]}" --split train --out "$WORK/saliency_train.h5" --overwrite

echo "== seeds: CAMs + saliency -> seed maps"
"$DGCN" seeds "${DS[@]}" --split train --cams "$WORK/cam/cams_train.h5" \
  --saliency "$WORK/saliency_train.h5" --out "$WORK/seeds_train.h5" --overwrite

echo "== train: segmentation network, seeds expanded by graph cut every iteration"
"$DGCN" train "${DS[@]}" "${DEV[@]}" "${NET[@]}" --epochs 2 --expander graphcut \
  --boundary-loss none --seeds "$WORK/seeds_train.h5" --out "$WORK/train" --overwrite

echo "== infer: predict the val images"
"$DGCN" infer "${DS[@]}" "${DEV[@]}" --split val --scales 1 --no-crf \
  --checkpoint "$WORK/train/final.pt" --out "$WORK/pred" --overwrite

echo "== evaluate: predictions against the val masks"
"$DGCN" evaluate "$WORK/pred/pred.h5" "${DS[@]}" --split val --json "$WORK/eval_val.json"
