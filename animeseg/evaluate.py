"""Evaluate a segmentation model against COCO ground truth, exactly like pycocotools does.

One detection pass per image gives the raw predictions and, with a refiner, the refined ones too; both are
written in the predict output format (``predictions.json``, ``predictions-refined.json``) and scored from those
very records:

* mask and box AP, AP50, AP75 (plus APs/APm/APl and AR100) from pycocotools' ``COCOeval``, unchanged;
* the foreground metrics the anime-segmentation community reports, per image, then averaged: IoU, F-measure
  with beta^2 = 0.3 and MAE between the union of predicted masks (score >= ``threshold``) and the union of
  ground-truth masks;
* missed and spurious instances at ``threshold``: ground truth no prediction matched at mask IoU 0.5, and
  predictions that matched nothing (COCOeval's own greedy matching, read back from its ``evalImgs``).

Box AP scores each prediction's ``bbox`` as written, i.e. the tight box of its mask (``animeseg.cocojson``), so a
refined mask is judged with its own box.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from animeseg import cocojson
from animeseg.console import console, progress, summary_table, warn
from animeseg.errors import AnimesegError, ConfigError, InputError
from animeseg.instances import Instances
from animeseg.io import read_image, write_json, write_text

#: F-measure weight used by the anime-segmentation benchmarks (precision counts more than recall).
BETA2 = 0.3

#: COCOeval summary stats we report, by index into ``COCOeval.stats``.
AP_KEYS = {"AP": 0, "AP50": 1, "AP75": 2, "APs": 3, "APm": 4, "APl": 5, "AR100": 8}


# ------------------------------------------------------------------------------------------------ ground truth
@dataclass
class GroundTruth:
    """COCO ground truth and where its images are.

    Attributes:
        coco: the pycocotools index of the annotation file.
        paths: image id -> image file.
        source: the annotation file.
    """

    coco: COCO
    paths: dict[int, Path]
    source: Path

    @property
    def categories(self) -> dict[int, str]:
        """COCO category id -> name."""
        return {int(c["id"]): str(c["name"]) for c in self.coco.dataset.get("categories", [])}


def _quiet_coco(path: Path | None = None, dataset: dict[str, Any] | None = None) -> COCO:
    """A pycocotools COCO index without its prints."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        if dataset is None:
            try:
                dataset = json.loads(Path(path).read_text(encoding="utf-8"))
            except OSError as e:
                raise InputError(path, f"cannot read ({e.strerror})") from None
            except ValueError as e:
                raise InputError(path, f"not valid JSON ({e})") from None
        if not isinstance(dataset, dict) or not isinstance(dataset.get("images"), list):
            raise InputError(path or "ground truth", "not a COCO instances file (no 'images' list)")
        dataset.setdefault("annotations", [])
        dataset.setdefault("categories", [])
        coco.dataset = dataset
        coco.createIndex()
    return coco


def _find_image(file_name: str, roots: Sequence[Path]) -> Path | None:
    rel = Path(file_name)
    for root in roots:
        for candidate in (root / rel, root / rel.name):
            if candidate.is_file():
                return candidate
    return None


def load_ground_truth(data: str | Path, split: str = "val", images: str | Path | None = None) -> GroundTruth:
    """Ground truth from a built dataset (``data.yaml`` or its folder: ``annotations/<split>.json``) or from any
    COCO instances file (then ``images`` is the folder its ``file_name`` entries are relative to).

    Annotations must have masks (polygons or RLE); a detection-only file is refused.
    """
    data = Path(data).expanduser().resolve()
    roots: list[Path] = []
    if data.is_dir():
        data = data / "data.yaml"
    if data.suffix.lower() in (".yaml", ".yml"):
        if not data.is_file():
            raise InputError(data, "no such dataset file")
        try:
            doc = yaml.safe_load(data.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ConfigError(data, "", f"not valid YAML ({str(e).splitlines()[0]})") from None
        root = Path(doc.get("path") or data.parent)
        root = root if root.is_absolute() else (data.parent / root).resolve()
        ann_file = data.parent / "annotations" / f"{split}.json"
        if not ann_file.is_file():
            ann_file = root / "annotations" / f"{split}.json"
        if not ann_file.is_file():
            raise InputError(ann_file, f"no COCO annotations for split {split!r} (is this a built animeseg dataset?)")
        roots += [root, root / "images" / split]
        split_dir = doc.get(split)
        if isinstance(split_dir, str):
            roots.append(root / split_dir)
    else:
        ann_file = data
        if not ann_file.is_file():
            raise InputError(ann_file, "no such annotation file")
        roots.append(ann_file.parent)
    if images is not None:
        images = Path(images).expanduser().resolve()
        if not images.is_dir():
            raise InputError(images, "no such images folder")
        roots.insert(0, images)
    coco = _quiet_coco(ann_file)
    anns = coco.dataset["annotations"]
    if anns and not all(a.get("segmentation") for a in anns):
        missing = sum(1 for a in anns if not a.get("segmentation"))
        raise InputError(ann_file, f"{missing} of {len(anns)} annotations have no mask (segmentation)")
    if not coco.dataset["categories"]:
        raise InputError(ann_file, "no categories")
    paths: dict[int, Path] = {}
    for img in coco.dataset["images"]:
        found = _find_image(str(img["file_name"]), roots)
        paths[int(img["id"])] = found if found is not None else roots[0] / str(img["file_name"])
    return GroundTruth(coco, paths, ann_file)


# ------------------------------------------------------------------------------------------------ classes
def class_map(
    model_names: dict[int, str], categories: dict[int, str], pairs: Iterable[str] | dict | None = None
) -> dict[int, int]:
    """Model class id -> ground-truth category id.

    ``pairs`` are ``"MODEL=GT"`` strings (or a dict), each side a name or an id (model class id; COCO category
    id), e.g. ``person=character`` or ``0=1``. Without pairs, classes map by equal names (case-insensitive).
    """
    by_model = {n.lower(): i for i, n in model_names.items()}
    by_gt = {n.lower(): i for i, n in categories.items()}

    def lookup(token: Any, names: dict[str, int], ids: Iterable[int], what: str) -> int:
        text = str(token).strip()
        if text.lower() in names:
            return names[text.lower()]
        if text.lstrip("-").isdigit() and int(text) in set(ids):
            return int(text)
        raise AnimesegError(f"--classes {text!r}: no {what} of that name or id (have: {', '.join(names)})")

    if pairs:
        if not isinstance(pairs, dict):
            pairs = [p.strip() for item in pairs for p in str(item).split(",") if p.strip()]  # a=b,c=d works too
        items = pairs.items() if isinstance(pairs, dict) else (p.split("=", 1) if "=" in p else (p, p) for p in pairs)
        out: dict[int, int] = {}
        for model_side, gt_side in items:
            m = lookup(model_side, by_model, model_names, "model class")
            out[m] = lookup(gt_side, by_gt, categories, "ground-truth category")
        return out
    out = {i: by_gt[n.lower()] for i, n in model_names.items() if n.lower() in by_gt}
    if not out:
        model_list = ", ".join(list(model_names.values())[:8]) + (", ..." if len(model_names) > 8 else "")
        raise AnimesegError(
            f"the model's classes ({model_list}) and the ground truth's ({', '.join(categories.values())}) share no "
            f"name; map them with --classes MODEL=GT, e.g. --classes {model_names.get(0, '0')}="
            f"{next(iter(categories.values()))}"
        )
    return out


def to_ground_truth_classes(instances: Instances, mapping: dict[int, int], categories: dict[int, str]) -> Instances:
    """Keep mapped instances and relabel them so that cocojson's ``category_id`` is the ground truth's id."""
    keep = np.array([int(c) in mapping for c in instances.classes], bool)
    kept = instances[keep]
    kept.classes = np.array([mapping[int(c)] - 1 for c in kept.classes], np.int64)
    kept.names = {cid - 1: name for cid, name in categories.items()}
    return kept


# ------------------------------------------------------------------------------------------------ metrics
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
    return _quiet_coco(dataset=dataset)


def coco_metrics(
    gt: COCO,
    annotations: list[dict[str, Any]],
    image_ids: Sequence[int],
    category_ids: Sequence[int],
    threshold: float = 0.25,
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


def ground_truth_foreground(gt: COCO, image_id: int, category_ids: Iterable[int]) -> np.ndarray:
    """(H, W) bool union of the image's ground-truth masks of ``category_ids`` (crowd regions included)."""
    info = gt.imgs[image_id]
    fg = np.zeros((int(info["height"]), int(info["width"])), bool)
    for ann in gt.loadAnns(gt.getAnnIds(imgIds=[image_id], catIds=list(category_ids), iscrowd=None)):
        fg |= gt.annToMask(ann).astype(bool)
    return fg


# ------------------------------------------------------------------------------------------------ detection
def _segmenter(model: str | Path, refiner: Any, **kwargs: Any) -> Any:
    from animeseg.predict import Segmenter

    return Segmenter(model, refiner, **kwargs)


def refine_confident(seg: Any, image: np.ndarray, raw: Instances, threshold: float) -> Instances:
    """Refined instances: those scoring >= ``threshold`` go through ``seg.refine`` together (exactly what
    ``animeseg predict --conf threshold --refine ...`` would output for them, overlaps settled among them); the
    low-score tail AP also reads keeps its raw masks. Same instances, scores and order as ``raw``.

    Refining the tail too would cost a refiner call per low-confidence box (up to ``max_det`` per image) for
    detections nobody keeps in practice.
    """
    top = raw.scores >= threshold
    if top.all():
        return seg.refine(image, raw)
    head, tail = seg.refine(image, raw[top]), raw[~top]
    name = getattr(getattr(seg, "refiner", None), "name", "refiner")
    tail_records = [
        {**rec, "method": name, "refined": False, "reason": f"score below {threshold}: not refined"}
        for rec in tail.refine
    ]
    order = np.concatenate([np.flatnonzero(top), np.flatnonzero(~top)])
    inverse = np.argsort(order, kind="stable")
    records = list(head.refine) + tail_records
    return Instances(
        np.concatenate([head.boxes, tail.boxes])[inverse],
        np.concatenate([head.scores, tail.scores])[inverse],
        np.concatenate([head.classes, tail.classes])[inverse],
        np.concatenate([head.masks, tail.masks])[inverse],
        dict(raw.names),
        [records[i] for i in inverse],
    )


@dataclass
class Variant:
    """One set of predictions being scored (``raw``, ``refined``)."""

    name: str
    file_name: str
    annotations: list[dict[str, Any]] = field(default_factory=list)
    foreground: list[dict[str, float]] = field(default_factory=list)


def evaluate(
    model: str | Path,
    data: str | Path,
    *,
    split: str = "val",
    images: str | Path | None = None,
    classes: Sequence[str] | dict | None = None,
    imgsz: int = 640,
    conf: float = 0.001,
    iou: float = 0.7,
    max_det: int = 100,
    threshold: float = 0.25,
    device: str | None = None,
    refiner: Any = None,
    out: str | Path | None = None,
    segmenter: Any = None,
) -> dict[str, Any]:
    """Score ``model`` on COCO ground truth; writes ``metrics.json``, ``metrics.md`` and the predictions into
    ``out``, prints the table, and returns the metrics dict (the content of ``metrics.json``).

    Args:
        model: YOLO weights (``.pt``, ``.onnx``...), loaded offline.
        data: a built dataset (``data.yaml`` or folder; ground truth from ``annotations/<split>.json``) or a COCO
            instances JSON (images under ``images``, else next to the file).
        classes: ``MODEL=GT`` class mapping (see :func:`class_map`); default: equal names.
        imgsz, iou, max_det, device: detection settings.
        conf: lowest score kept; AP needs the low-confidence detections too (COCOeval reads the top 100).
        threshold: score from which a detection counts as found, for foreground metrics and instance counts.
        refiner: a Refiner (``animeseg.refine.build_refiner``): the refined masks are scored too, same detections.
        out: output folder (default ``runs/eval/<model stem>-<split>``).
        segmenter: an already built ``Segmenter`` to use instead of building one from the settings above.
    """
    gt = load_ground_truth(data, split, images)
    categories = gt.categories
    seg = segmenter
    if seg is None:
        seg = _segmenter(model, refiner, imgsz=imgsz, conf=conf, iou=iou, max_det=max_det, device=device)
    mapping = class_map(dict(seg.names), categories, classes)
    if segmenter is None and len(mapping) < len(seg.names):
        seg = _segmenter(
            model, refiner, imgsz=imgsz, conf=conf, iou=iou, max_det=max_det, device=device, classes=sorted(mapping)
        )
    cat_ids = sorted(set(mapping.values()))
    unmapped = [n for c, n in categories.items() if c not in cat_ids]
    if unmapped:
        warn(f"ground-truth categories without a model class are not scored: {', '.join(unmapped)}")
    out = Path(out or Path("runs/eval") / f"{Path(str(model)).stem}-{split}").expanduser().resolve()
    has_refiner = getattr(seg, "refiner", refiner) is not None

    variants = [Variant("raw", "predictions.json")]
    if has_refiner:
        variants.append(Variant("refined", "predictions-refined.json"))
    records: list[dict[str, Any]] = []
    failures: list[tuple[str, str]] = []
    ok_ids: list[int] = []
    image_infos = sorted(gt.coco.dataset["images"], key=lambda r: int(r["id"]))
    with progress() as bar:
        task = bar.add_task("evaluating", total=len(image_infos))
        for info in image_infos:
            image_id = int(info["id"])
            path = gt.paths[image_id]
            record = cocojson.image_record(image_id, str(info["file_name"]), info["height"], info["width"])
            try:
                image = read_image(path)
                if image.shape[:2] != (int(info["height"]), int(info["width"])):
                    raise InputError(
                        path,
                        f"image is {image.shape[1]}x{image.shape[0]} but the annotations say "
                        f"{info['width']}x{info['height']}",
                    )
                raw = seg.detect(image)
                outputs = [raw]
                if has_refiner:
                    outputs.append(refine_confident(seg, image, raw, threshold))
            except InputError as e:
                failures.append((str(path), e.problem))
                records.append({**record, "status": "error", "error": e.problem})
                bar.advance(task)
                continue
            ok_ids.append(image_id)
            records.append({**record, "status": "ok", "error": None})
            gt_fg = ground_truth_foreground(gt.coco, image_id, cat_ids)
            for variant, inst in zip(variants, outputs, strict=True):
                inst = to_ground_truth_classes(inst, mapping, categories)
                variant.annotations += cocojson.instance_annotations(
                    inst, image_id, len(variant.annotations) + 1, with_scores=True
                )
                found = inst.masks[inst.scores >= threshold]
                pred_fg = found.any(0) if len(found) else np.zeros_like(gt_fg)
                variant.foreground.append(foreground_metrics(pred_fg, gt_fg))
            bar.advance(task)

    if not ok_ids:
        raise AnimesegError(f"{gt.source}: none of its {len(image_infos)} images could be read")
    used_categories = [c for c in gt.coco.dataset["categories"] if int(c["id"]) in cat_ids]
    results: dict[str, Any] = {}
    for variant in variants:
        doc = {"images": records, "annotations": variant.annotations, "categories": used_categories}
        write_json(out / variant.file_name, doc)
        scores = coco_metrics(gt.coco, variant.annotations, ok_ids, cat_ids, threshold)
        fg = {k: float(np.mean([m[k] for m in variant.foreground])) for k in ("IoU", "F", "MAE")}
        results[variant.name] = {**scores, "foreground": fg, "predictions": variant.file_name}

    metrics = {
        "model": str(model),
        "ground_truth": {
            "annotations": str(gt.source),
            "split": split,
            "images": len(image_infos),
            "instances": len(gt.coco.getAnnIds(catIds=cat_ids)),
            "categories": [c["name"] for c in used_categories],
        },
        "class_map": {seg.names[m]: categories[g] for m, g in sorted(mapping.items())},
        "settings": {
            "imgsz": imgsz,
            "conf": conf,
            "iou": iou,
            "max_det": max_det,
            "threshold": threshold,
            "device": device,
            "refiner": getattr(getattr(seg, "refiner", None), "name", None),
            "beta2": BETA2,
        },
        "images": {"evaluated": len(ok_ids), "failed": [{"file": f, "error": e} for f, e in failures]},
        "results": results,
    }
    write_json(out / "metrics.json", metrics, indent=2)
    write_text(out / "metrics.md", markdown_table(metrics))
    title = f"Evaluation ({len(ok_ids)} images) -> {out}"
    console.print(summary_table(title, ["metric", *results], table_rows(results)))
    for f, e in failures:
        warn(f"{f}: {e} (not evaluated)")
    return metrics


# ------------------------------------------------------------------------------------------------ tables
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
