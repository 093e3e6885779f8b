#!/usr/bin/env bash
# The packaged learned refiner (animeseg/models/anime-refiner.onnx), from scratch:
#   bash recipes/anime-refiner/run.sh [SHARED] [OUT]
#
#   SHARED  the folder holding data/open-sprites and data/renpy-sprites (default: ../shared next to the checkout;
#           datasets.yaml and validation.yaml point there too)
#   OUT     where everything is written (default: runs/refiner)
#
# Steps: training composites of every artist but the two held out (wanted-dragon: the team's test artist;
# snowyyang-godot-vn: the refiner's validation artist); the packaged detector's own masks on them, cropped
# around each detection and each character (animeseg/train/refiner_data.py); 2 x 1,500 batches of 16 crops with
# made-up mask errors and style changes (animeseg/train/refiner.py) for the half-resolution network (--stem 2); ONNX
# export; the held-out check (bench/learned.py).
# About 30 minutes on a 2-core CPU with THREADS=2 (what the shipped network used; the thread count changes the
# arithmetic's order, so keep it to reproduce the shipped weights); needs the [train] extra (PyTorch).
set -euo pipefail
cd "$(dirname "$0")/../.."
SHARED=${1:-../shared}
OUT=${2:-runs/refiner}
THREADS=${THREADS:-2}
STEPS=${STEPS:-1500}
HERE=recipes/anime-refiner
mkdir -p "$OUT"
[ -d "$SHARED/data/open-sprites" ] || { echo "no open-sprites under $SHARED/data" >&2; exit 2; }

animeseg data build $HERE/datasets.yaml --out "$OUT/dataset" --workers 2 --overwrite
animeseg data build $HERE/validation.yaml --out "$OUT/validation" --workers 2 --overwrite
animeseg data build recipes/anime-yolov8n-seg/heldout.yaml --out "$OUT/heldout" --workers 2 --overwrite
python $HERE/refiner.py samples "$OUT/dataset" "$OUT/samples"
# two stages of 1,500 batches: the second continues the first (and its architecture) at half the learning rate,
# with its own seed
python $HERE/refiner.py fit "$OUT/samples" --out "$OUT/fit1" --steps "$STEPS" --threads "$THREADS" --lr 3e-3 --seed 0 \
    --stem 2
python $HERE/refiner.py fit "$OUT/samples" --out "$OUT/fit2" --steps "$STEPS" --threads "$THREADS" --lr 1.5e-3 \
    --seed 1 --init "$OUT/fit1/refiner.pt"
python $HERE/refiner.py export "$OUT/fit2/refiner.pt" "$OUT/anime-refiner.onnx"
PYTHONPATH=. python bench/learned.py accuracy "$OUT/heldout" --refiner "$OUT/anime-refiner.onnx"
PYTHONPATH=. python bench/learned.py accuracy "$OUT/validation" --refiner "$OUT/anime-refiner.onnx"
