"""The team's real-picture test: the default `animeseg predict` on real pictures, judged per kind of picture.

    PYTHONPATH=. python bench/real.py [--model M] [--out runs/real] [--imgsz N] [--refine none] [--conf C]
                                      [--zoom-out F]

Pictures and labels: ``bench/real_pictures.yaml`` (boxes of the characters a user wants, ``ignore`` boxes for
animals, crowds and tiny figures; pictures in ``../shared/data/real-pictures``). Each picture is segmented as
``animeseg predict`` would (the model's own defaults unless an option is given) and judged the way the team
judges by eye, from the boxes of the predicted masks:

* a labelled character is **found** when a prediction's mask box overlaps its box with IoU >= 0.5 (one
  prediction per character, best first), **partial** when a prediction covers at least 30 % of its box or
  overlaps it with IoU >= 0.2 (a part, a split, one box over two), else **missed**;
* a prediction is **wrong** when less than 30 % of its mask box lies on labelled or ignored boxes;
* a picture is **right** when every character is found and nothing is wrong, **partial** when something is
  found or partial, else **nothing or wrong**; **nothing found** counts pictures without a single prediction.

Writes a contact sheet per picture (masks in colour; label boxes green found, orange partial, red missed;
wrong predictions' boxes magenta) and ``sheet.png`` of all of them to ``--out``, and prints the table per kind,
with the held-out pictures (``holdout: true``, kept out of all tuning) on their own line.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from animeseg._lazy import cv2  # noqa: E402
from animeseg.io import read_image  # noqa: E402
from animeseg.predict import Segmenter  # noqa: E402

LABELS = ROOT / "bench" / "real_pictures.yaml"
FOUND, PARTIAL = 0.5, 0.2
COVER = 0.3
COLOURS = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240)]


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def covered(a: np.ndarray, b: np.ndarray) -> float:
    """Share of box ``a`` that box ``b`` covers."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return ix * iy / max((a[2] - a[0]) * (a[3] - a[1]), 1e-9)


def judge(labels: np.ndarray, ignore: np.ndarray, preds: np.ndarray) -> tuple[list[str], list[bool]]:
    """``labels`` (L, 4), ``ignore`` (I, 4), ``preds`` (P, 4) boxes in pixels: each label's verdict (found,
    partial, missed) and whether each prediction is wrong."""
    verdict = ["missed"] * len(labels)
    pairs = sorted(((box_iou(lb, pb), i, j) for i, lb in enumerate(labels) for j, pb in enumerate(preds)), reverse=True)
    used: set[int] = set()
    for iou, i, j in pairs:
        if iou < FOUND:
            break
        if verdict[i] == "missed" and j not in used:
            verdict[i] = "found"
            used.add(j)
    for i, lb in enumerate(labels):
        if verdict[i] == "missed" and any(covered(lb, pb) >= COVER or box_iou(lb, pb) >= PARTIAL for pb in preds):
            verdict[i] = "partial"
    known = np.concatenate([labels, ignore]) if len(ignore) else labels
    wrong = [sum(covered(pb, kb) for kb in known) < COVER for pb in preds]
    return verdict, wrong


def picture_verdict(verdict: list[str], wrong: list[bool]) -> str:
    if verdict and all(v == "found" for v in verdict) and not any(wrong):
        return "right"
    if any(v != "missed" for v in verdict):
        return "partial"
    return "nothing or wrong"


def draw(image: np.ndarray, inst, labels, verdict, wrong) -> np.ndarray:
    """A contact-sheet tile: (H', W', 3) uint8 RGB, long side 640."""
    out = image.astype(np.float32)
    for k, m in enumerate(inst.masks):
        out[m] = out[m] * 0.45 + np.array(COLOURS[k % len(COLOURS)], np.float32) * 0.55
    out = out.astype(np.uint8)
    scale = 640 / max(out.shape[:2])
    out = np.ascontiguousarray(cv2.resize(out, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA))
    tone = {"found": (0, 200, 0), "partial": (255, 150, 0), "missed": (255, 0, 0)}
    for lb, v in zip(labels, verdict, strict=True):
        x0, y0, x1, y1 = (lb * scale).astype(int)
        cv2.rectangle(out, (x0, y0), (x1, y1), tone[v], 2)
    for b, w in zip(inst.boxes, wrong, strict=True):
        if w:
            x0, y0, x1, y1 = (b * scale).astype(int)
            cv2.rectangle(out, (x0, y0), (x1, y1), (255, 0, 255), 2)
    return out


def sheet(tiles: list[tuple[str, np.ndarray]], cols: int = 4) -> np.ndarray:
    cell = 640
    rows = (len(tiles) + cols - 1) // cols
    canvas = np.full((rows * (cell + 24), cols * cell, 3), 255, np.uint8)
    for k, (name, t) in enumerate(tiles):
        r, c = divmod(k, cols)
        y, x = r * (cell + 24), c * cell
        canvas[y + 24 : y + 24 + t.shape[0], x : x + t.shape[1]] = t
        cv2.putText(canvas, name[:60], (x + 4, y + 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return canvas


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model file (default: the packaged model)")
    ap.add_argument("--out", default="runs/real", help="where the contact sheets go")
    ap.add_argument("--labels", default=str(LABELS))
    ap.add_argument("--imgsz", type=int, default=None)
    ap.add_argument("--conf", type=float, default=None)
    ap.add_argument("--refine", default=None, help="refiner (default: the model's)")
    ap.add_argument("--zoom-out", type=float, default=None, help="second look when nothing is found (1: never)")
    ap.add_argument(
        "--portraits", action="store_true", help="judge head and bust crops of the larger characters instead"
    )
    args = ap.parse_args()
    spec = yaml.safe_load(Path(args.labels).read_text())
    root = (Path(args.labels).parent / spec["root"]).resolve()
    if not root.is_dir():
        sys.exit(f"{root}: the real pictures are not here (../shared/data/real-pictures)")
    chosen = (("imgsz", args.imgsz), ("conf", args.conf), ("zoom_out", args.zoom_out))
    options = {k: v for k, v in chosen if v is not None}
    if args.refine is not None:
        options["refine"] = None if args.refine == "none" else args.refine
    seg = Segmenter(args.model, **options)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows: dict[str, Counter] = {}
    tiles = []
    for pic, image, labels, ignore in pictures(spec, root, args.portraits):
        inst = seg(image)
        preds = inst.boxes_from_masks().astype(np.float64)
        verdict, wrong = judge(labels, ignore, preds)
        result = picture_verdict(verdict, wrong)
        group = "held out (all kinds)" if pic.get("holdout") else pic["kind"]
        for key in (group, "all" if not pic.get("holdout") else None):
            if key is None:
                continue
            c = rows.setdefault(key, Counter())
            c["pictures"] += 1
            c[result] += 1
            c["nothing found"] += int(len(inst) == 0)
            c.update(f"char {v}" for v in verdict)
            c["wrong predictions"] += sum(wrong)
        name = pic.get("name", Path(pic["file"]).stem)
        tile = draw(image, inst, labels, verdict, wrong)
        cv2.imwrite(str(out / f"{name}.png"), tile[..., ::-1])
        tiles.append((f"{name}: {result}", tile))
        print(f"{name:58s} {result:17s} {' '.join(verdict)}  wrong {sum(wrong)}", flush=True)
    cv2.imwrite(str(out / "sheet.png"), sheet(tiles)[..., ::-1])
    cols = ["pictures", "right", "partial", "nothing or wrong", "nothing found", "characters found", "missed"]
    cols.append("wrong predictions")
    print("\n| kind | " + " | ".join(cols) + " |")
    print("|---|" + "---:|" * len(cols))
    order = sorted(k for k in rows if k not in ("all", "held out (all kinds)")) + ["all", "held out (all kinds)"]
    for k in order:
        if k in rows:
            c = rows[k]
            c["characters found"] = c["char found"]
            c["missed"] = c["char missed"]
            cells = [str(c[x]) for x in cols]
            cells[cols.index("characters found")] += f" (+{c['char partial']} partial)"
            print(f"| {k} | " + " | ".join(cells) + " |")


def pictures(spec: dict, root: Path, portraits: bool):
    """(picture entry, image, label boxes (L, 4), ignore boxes (I, 4)) in pixels, for each picture; with
    ``portraits``, a head crop (the top 35 % of the character's box) and a bust crop (the top 60 %), each widened to
    at least a 3:4 frame, of every labelled character at least a quarter of its picture's height: frame-filling
    characters cut from real art, the character's box clipped to the crop as its label."""
    for pic in spec["pictures"]:
        image = read_image(root / pic["file"])
        h, w = image.shape[:2]
        size = np.array([w, h, w, h], np.float64)
        labels = np.array(pic["characters"], np.float64).reshape(-1, 4) * size
        ignore = np.array(pic.get("ignore", []), np.float64).reshape(-1, 4) * size
        if not portraits:
            yield pic, image, labels, ignore
            continue
        for k, (x0, y0, x1, y1) in enumerate(labels):
            if y1 - y0 < 0.25 * h:
                continue
            for part, share in (("head", 0.35), ("bust", 0.6)):
                ch = (y1 - y0) * share
                cw = max(x1 - x0, ch * 0.75)
                cx = (x0 + x1) / 2
                box = np.array([max(0, cx - cw / 2), y0, min(w, cx + cw / 2), min(h, y0 + ch)]).round().astype(int)
                crop = image[box[1] : box[3], box[0] : box[2]]
                inside = np.array([x0, y0, x1, y1]) - np.array([box[0], box[1], box[0], box[1]])
                label = np.clip(inside, 0, [crop.shape[1], crop.shape[0], crop.shape[1], crop.shape[0]])
                entry = {**pic, "kind": f"portrait: {part}", "name": f"{Path(pic['file']).stem}_{k}_{part}"}
                yield entry, crop, label[None], np.zeros((0, 4))


if __name__ == "__main__":
    main()
