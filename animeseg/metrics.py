"""Scores of predictions against COCO ground truth, exactly like pycocotools computes them, plus the foreground
metrics the anime-segmentation community reports:

* mask and box AP, AP50, AP75 (plus APs/APm/APl and AR100) from pycocotools' ``COCOeval``, unchanged;
* foreground IoU, F-measure with beta^2 = 0.3 and MAE between the union of predicted masks and the union of
  ground-truth masks;
* missed and spurious instances at a score threshold (COCOeval's own greedy matching, read from ``evalImgs``).
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from animeseg.ground_truth import quiet_coco

#: F-measure weight used by the anime-segmentation benchmarks (precision counts more than recall).
BETA2 = 0.3

#: COCOeval summary stats we report, by index into ``COCOeval.stats``.
AP_KEYS = {"AP": 0, "AP50": 1, "AP75": 2, "APs": 3, "APm": 4, "APl": 5, "AR100": 8}


def foreground_metrics(pred: np.ndarray, gt: np.ndarray, beta2: float = BETA2) -> dict[str, float]:
    """IoU, F-measure (beta^2) and MAE of two (H, W) bool foreground masks.

    Both empty is a perfect answer (IoU 1, F 1); an empty prediction of a non-empty truth scores 0 (precision
    is taken as 0 when nothing is predicted), as does any prediction of an empty truth.
    """
    pred, gt = pred.astype(bool), gt.astype(bool)
    tp = float(np.logical_and(pred, gt).sum())
    p_sum, g_sum = float(pred.sum()), float(gt.sum())
    union = p_sum + g_sum - tp
    mae = float(np.logical_xor(pred, gt).mean()) if pred.size else 0.0
    if union == 0:
        return {"IoU": 1.0, "F": 1.0, "MAE": mae}
    iou = tp / union
    if tp == 0:
        return {"IoU": iou, "F": 0.0, "MAE": mae}
    precision, recall = tp / p_sum, tp / g_sum
    f = (1 + beta2) * precision * recall / (beta2 * precision + recall)
    return {"IoU": iou, "F": float(f), "MAE": mae}


def _results_coco(gt: COCO, annotations: list[dict[str, Any]]) -> COCO:
    """pycocotools' ``loadRes`` on a copy of the records; an empty list (which it cannot load) gives an empty set."""
    if annotations:
        with contextlib.redirect_stdout(io.StringIO()):
            return gt.loadRes(copy.deepcopy(annotations))
    dataset = {"images": list(gt.dataset["images"]), "annotations": [], "categories": gt.dataset["categories"]}
    return quiet_coco(dataset=dataset)


def coco_metrics(
    gt: COCO,
    annotations: list[dict[str, Any]],
    image_ids: Sequence[int],
    category_ids: Sequence[int],
    threshold: float,
) -> dict[str, Any]:
    """COCOeval mask and box metrics of detection records, plus instance counts at ``threshold``.

    Returns ``{"mask": {AP...}, "box": {AP...}, "instances": {...}}``. A metric COCOeval leaves undefined (-1:
    no ground truth in that area range) becomes None.
    """
    out: dict[str, Any] = {}
    res = _results_coco(gt, annotations)
    for iou_type, key in (("segm", "mask"), ("bbox", "box")):
        ev = COCOeval(gt, res, iou_type)
        ev.params.imgIds = sorted(int(i) for i in image_ids)
        ev.params.catIds = sorted(int(c) for c in category_ids)
        with contextlib.redirect_stdout(io.StringIO()):
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        out[key] = {name: (None if ev.stats[i] < 0 else float(ev.stats[i])) for name, i in AP_KEYS.items()}
        if iou_type == "segm":
            out["instances"] = instance_counts(ev, threshold)
    return out


def instance_counts(ev: COCOeval, threshold: float) -> dict[str, int]:
    """Ground-truth, predicted, matched, missed and spurious instances at mask IoU 0.5 and score >= threshold.

    Read from an evaluated ``COCOeval`` (area range 'all', largest maxDets): its matching is greedy by score, so
    the matches of the detections above ``threshold`` do not depend on the ones below. Crowd regions and what
    matches them are ignored, as in AP.
    """
    all_range = ev.params.areaRng[ev.params.areaRngLbl.index("all")]
    max_det = ev.params.maxDets[-1]
    gt_n = pred_n = matched = spurious = 0
    for e in ev.evalImgs:
        if e is None or list(e["aRng"]) != list(all_range) or e["maxDet"] != max_det:
            continue
        scores = dict(zip(e["dtIds"], e["dtScores"], strict=True))
        dt_match, dt_ignore = e["dtMatches"][0], e["dtIgnore"][0]
        for dt_id, m, ign in zip(e["dtIds"], dt_match, dt_ignore, strict=True):
            if scores[dt_id] >= threshold and not ign:
                pred_n += 1
                spurious += int(m == 0)
        gt_match = e["gtMatches"][0]
        for m, ign in zip(gt_match, e["gtIgnore"], strict=True):
            if ign:
                continue
            gt_n += 1
            matched += int(m != 0 and scores.get(int(m), -1.0) >= threshold)
    return {
        "ground_truth": gt_n,
        "predicted": pred_n,
        "matched": matched,
        "missed": gt_n - matched,
        "spurious": spurious,
    }


_ROWS = [
    ("mask AP", ("mask", "AP")),
    ("mask AP50", ("mask", "AP50")),
    ("mask AP75", ("mask", "AP75")),
    ("box AP", ("box", "AP")),
    ("box AP50", ("box", "AP50")),
    ("box AP75", ("box", "AP75")),
    ("foreground IoU", ("foreground", "IoU")),
    ("foreground F (beta^2=0.3)", ("foreground", "F")),
    ("foreground MAE", ("foreground", "MAE")),
    ("instances (ground truth)", ("instances", "ground_truth")),
    ("missed", ("instances", "missed")),
    ("spurious", ("instances", "spurious")),
]


def table_rows(results: dict[str, Any]) -> list[list[Any]]:
    """One row per metric, one column per variant (raw, refined)."""
    rows = []
    for label, (group, key) in _ROWS:
        values = [results[v][group][key] for v in results]
        rows.append([label, *("n/a" if x is None else x for x in values)])
    return rows


def markdown_table(metrics: dict[str, Any]) -> str:
    """The metrics as a Markdown table, with what was evaluated above it."""
    results = metrics["results"]
    gt = metrics["ground_truth"]
    s = metrics["settings"]
    lines = [
        f"Model `{metrics['model']}` on `{gt['annotations']}` ({metrics['images']['evaluated']} images, "
        f"{gt['instances']} instances); imgsz {s['imgsz']}, conf {s['conf']}, threshold {s['threshold']}.",
        "",
        "| metric | " + " | ".join(results) + " |",
        "|---|" + "---:|" * len(results),
    ]
    for row in table_rows(results):
        cells = [f"{v:.4f}" if isinstance(v, float) else str(v) for v in row[1:]]
        lines.append(f"| {row[0]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
