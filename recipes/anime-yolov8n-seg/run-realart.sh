#!/usr/bin/env bash
# Stage 2 of the shipped default model (issue 30: real art), from stage 1's checkpoint:
#   bash recipes/anime-yolov8n-seg/run-realart.sh [SHARED] [OUT] [START]
#
#   SHARED  the folder holding data/open-sprites and data/renpy-sprites (default: ../shared; realart.yaml and
#           heldout.yaml point there too)
#   OUT     where everything is written (default: runs/realart)
#   START   the stage-1 checkpoint (default: the packaged animeseg/models/anime-yolov8n-seg.pt, which run.sh
#           makes from the COCO start); so the whole model is run.sh then this script
#
# Steps: composites that look like real art (realart.yaml), fine-tuning for 6 epochs (a checkpoint per epoch),
# the mean of the last four epochs' weights (soup.py), ONNX export, evaluation on the held-out artist
# (wanted-dragon) and on the real pictures and their portrait crops (bench/real.py). About 1 h 10 min on a 2-core
# CPU; an interrupted training continues with RESUME=1 (animeseg train --resume). The packaged files are
# $OUT/export/anime-yolov8n-seg.pt and $OUT/export/onnx/anime-yolov8n-seg.onnx.
set -euo pipefail
cd "$(dirname "$0")/../.."
SHARED=${1:-../shared}
OUT=${2:-runs/realart}
START=${3:-animeseg/models/anime-yolov8n-seg.pt}
DEVICE=${DEVICE:-cpu}
EPOCHS=${EPOCHS:-6}
HERE=recipes/anime-yolov8n-seg
mkdir -p "$OUT"

[ -f "$OUT/dataset/manifest.json" ] || animeseg data build $HERE/realart.yaml --out "$OUT/dataset" --workers 2 --overwrite
[ -f "$OUT/heldout/manifest.json" ] || animeseg data build $HERE/heldout.yaml --out "$OUT/heldout" --workers 2 --overwrite
if [ "${RESUME:-0}" = 1 ]; then
  animeseg train --resume --project "$OUT/train" --name realart --weights-dir "$OUT/weights"
else
  animeseg train --data "$OUT/dataset/data.yaml" --model "$START" --epochs "$EPOCHS" --imgsz 512 \
      --device "$DEVICE" --project "$OUT/train" --name realart --weights-dir "$OUT/weights" \
      -a warmup_epochs=0.5 -a mosaic=0.5 -a close_mosaic=1 -a workers=2 -a cache=ram -a plots=False \
      -a save_period=1
fi
# the shipped weights: the mean of the last four epochs' weights (soup.py; better on held-out art than the last)
W="$OUT/train/realart/weights"
mkdir -p "$OUT/export"
python $HERE/soup.py "$OUT/export/anime-yolov8n-seg.pt" "$W/epoch$((EPOCHS - 4)).pt" "$W/epoch$((EPOCHS - 3)).pt" \
    "$W/epoch$((EPOCHS - 2)).pt" "$W/last.pt"
cp animeseg/models/anime-yolov8n-seg.json "$OUT/export/anime-yolov8n-seg.json"   # the packaged defaults
animeseg export onnx --model "$OUT/export/anime-yolov8n-seg.pt" --imgsz 640 --out "$OUT/export/onnx/anime-yolov8n-seg.onnx"
PYTHONPATH=. python bench/learned.py accuracy "$OUT/heldout" --model "$OUT/export/onnx/anime-yolov8n-seg.onnx"
PYTHONPATH=. python bench/real.py --model "$OUT/export/onnx/anime-yolov8n-seg.onnx" --out "$OUT/real"
PYTHONPATH=. python bench/real.py --model "$OUT/export/onnx/anime-yolov8n-seg.onnx" --out "$OUT/portraits" --portraits
