"""Held-out accuracy and CPU speed of the packaged model against the COCO weights; Markdown for docs/model.md.

    PYTHONPATH=. python bench/model.py runs/recipe/heldout                 # the recipe's held-out build
    PYTHONPATH=. python bench/model.py runs/recipe/heldout --only packaged --refine

The held-out set is `recipes/anime-yolov8n-seg/heldout.yaml` built with `animeseg data build` (an artist and
characters kept out of training). Every row is scored by `animeseg.evaluate.evaluate` (pycocotools) twice: with
the low threshold AP needs (conf 0.001) and at the model's default settings (what `animeseg predict` keeps),
where the predicted-instance count is compared with the ground truth's too. Time is the median per image of
`Segmenter.__call__` over the set (decoded images, whole model), after one warm-up image.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from animeseg import weights as W  # noqa: E402
from animeseg.evaluate import evaluate, load_ground_truth  # noqa: E402
from animeseg.io import read_image  # noqa: E402
from animeseg.predict import Segmenter  # noqa: E402
from animeseg.refine import build_refiner  # noqa: E402

SHARED = ROOT.parent / "shared"


def rows(coco_pt: Path | None) -> dict[str, tuple[Path, int, dict]]:
    """label -> (model, imgsz, extra evaluate kwargs)."""
    out = {
        "packaged anime-yolov8n-seg ONNX, 640 (default)": (W.packaged_model("onnx"), 640, {}),
    }
    onnx = SHARED / "weights" / "yolov8n-seg-coco-int8.onnx"
    if onnx.is_file():
        out["COCO YOLOv8n-seg int8 ONNX, 320"] = (onnx, 320, {"classes": ["person=character"]})
    if coco_pt is not None:
        out["COCO YOLOv8n-seg recovered (.pt), 640"] = (coco_pt, 640, {"classes": ["person=character"]})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("heldout", type=Path, help="built held-out dataset (its annotations/train.json is used)")
    ap.add_argument("--coco-pt", type=Path, help="the COCO checkpoint from `animeseg weights import` (optional)")
    ap.add_argument("--only", choices=["packaged", "coco", "all"], default="all")
    ap.add_argument("--refine", action="store_true", help="also score --refine grabcut (slower)")
    ap.add_argument("--conf", type=float, help="default-settings threshold (default: each model's own)")
    args = ap.parse_args()
    gt = load_ground_truth(args.heldout, "train")
    images = [gt.paths[int(i["id"])] for i in gt.coco.dataset["images"]]
    table = []
    for label, (model, imgsz, extra) in rows(args.coco_pt).items():
        if args.only != "all" and args.only.lower() not in label.lower():
            continue
        refiner = build_refiner("grabcut") if args.refine else None
        conf = args.conf if args.conf is not None else W.model_settings(model)["conf"]
        with tempfile.TemporaryDirectory() as tmp:
            low = evaluate(model, args.heldout, split="train", imgsz=imgsz, conf=0.001, threshold=conf,
                           device="cpu", refine=refiner, out=Path(tmp) / "low", **extra)  # fmt: skip
            dflt = evaluate(model, args.heldout, split="train", imgsz=imgsz, conf=conf, threshold=conf,
                            device="cpu", refine=refiner, out=Path(tmp) / "dflt", **extra)  # fmt: skip
        seg = Segmenter(model, imgsz=imgsz, conf=conf, device="cpu")
        decoded = [read_image(p) for p in images[:30]]
        seg(decoded[0])
        times = []
        for im in decoded:
            t = time.perf_counter()
            seg(im)
            times.append(time.perf_counter() - t)
        for variant in low["results"]:
            r_low, r_def = low["results"][variant], dflt["results"][variant]
            counts = r_def["instances"]
            table.append(
                f"| {label}{' + grabcut' if variant == 'refined' else ''} | {r_low['mask']['AP']:.3f} | "
                f"{r_low['mask']['AP50']:.3f} | {r_def['mask']['AP']:.3f} | {counts['predicted']} / "
                f"{counts['ground_truth']} | {counts['missed']} | {counts['spurious']} | "
                f"{statistics.median(times) * 1000:.0f} ms |"
            )
        print(table[-1], flush=True)
    n = len(gt.coco.dataset["images"])
    inst = len(gt.coco.getAnnIds())
    print()
    print(f"Held-out `{args.heldout}`: {n} images, {inst} instances. {date.today()}, {platform.processor() or 'CPU'}"
          f" x{os.cpu_count()}, `PYTHONPATH=. python bench/model.py {' '.join(sys.argv[1:])}`")  # fmt: skip
    print()
    print("| model | mask AP | mask AP50 | mask AP at default conf | predicted / true (default conf) | missed | "
          "spurious | time per image (CPU) |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(table))


if __name__ == "__main__":
    main()
