"""Evaluate a segmentation model against COCO ground truth: the loop that ties ground truth, model and scores.

One detection pass per image gives the raw predictions and, with a refiner, the refined ones too; both are
written in the predict output format (``predictions.json``, ``predictions-refined.json``, by the same
:class:`animeseg.writers.PredictionsBuilder`) and scored from those very records by :mod:`animeseg.metrics`.
Images go through the same engine as ``animeseg predict`` (:mod:`animeseg.engine`), so an image that fails is
one line in the result, not the end of the evaluation. Ground truth comes from :mod:`animeseg.ground_truth`.

Box AP scores each prediction's ``bbox`` as written, i.e. the tight box of its mask (``animeseg.cocojson``), so a
refined mask is judged with its own box.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from animeseg.engine import Engine, LocalEngine
from animeseg.errors import AnimesegError, InputError
from animeseg.ground_truth import (
    class_map,
    ground_truth_foreground,
    load_ground_truth,
    to_ground_truth_classes,
)
from animeseg.instances import Instances
from animeseg.io import read_image, write_json, write_text
from animeseg.metrics import BETA2, coco_metrics, foreground_metrics, markdown_table
from animeseg.predict import MODEL_DEFAULT, Segmenter, check_keywords, keywords_of, refine_keyword
from animeseg.progress import ProgressCallback, Step, logger, report
from animeseg.settings import AP_SETTINGS, DetectSettings, model_defaults
from animeseg.writers import PredictionsBuilder, image_annotations


def eval_settings(model: str | Path, **explicit: Any) -> DetectSettings:
    """The detection settings ``evaluate`` uses for ``model``: its own defaults, :data:`AP_SETTINGS` over them,
    then every explicit (not None) setting."""
    return model_defaults(model).detect.override(**AP_SETTINGS).override(**explicit)


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
    predictions: PredictionsBuilder
    foreground: list[dict[str, float]] = field(default_factory=list)


@dataclass
class _Image:
    """One ground-truth image to evaluate."""

    image_id: int
    file_name: str
    path: Path
    height: int
    width: int


def evaluate(
    model: str | Path,
    data: str | Path,
    *,
    split: str = "val",
    images: str | Path | None = None,
    classes: Sequence[str] | dict | None = None,
    imgsz: int | None = None,
    conf: float | None = None,
    iou: float | None = None,
    max_det: int | None = None,
    threshold: float | None = None,
    device: str | None = None,
    refine: Any = MODEL_DEFAULT,
    out: str | Path | None = None,
    segmenter: Any = None,
    runtime: str | None = None,
    on_progress: ProgressCallback | None = None,
    engine: Engine | None = None,
    **unexpected: Any,
) -> dict[str, Any]:
    """Score ``model`` on COCO ground truth; writes ``metrics.json``, ``metrics.md`` and the predictions into
    ``out`` and returns the metrics dict (the content of ``metrics.json``; images that failed are listed under
    ``images.failed``).

    Args:
        model: YOLO weights (``.pt``, ``.onnx``...), loaded offline.
        data: a built dataset (``data.yaml`` or folder; ground truth from ``annotations/<split>.json``) or a COCO
            instances JSON (images under ``images``, else next to the file).
        classes: ``MODEL=GT`` class mapping (see :func:`animeseg.ground_truth.class_map`); default: equal names.
        imgsz, conf, iou, max_det, device: detection settings; None: :func:`eval_settings` (the model's own, with
            ``conf`` 0.001 and ``max_det`` 100: AP needs the low-confidence detections too).
        threshold: score from which a detection counts as found, for foreground metrics and instance counts, and
            from which it is refined; None: the model's default ``conf``, what ``predict`` keeps
            (:func:`animeseg.settings.model_defaults`).
        refine: a refiner name (as ``--refine``) or a Refiner (``animeseg.refine.build_refiner``): the refined
            masks are scored too, same detections; None or ``"none"``: raw masks only; default: the model's own
            refiner. (``refiner=`` is accepted as another name for it.)
        out: output folder (default ``runs/eval/<model stem>-<split>``).
        segmenter: an already built ``Segmenter`` to use instead of building one from the settings above.
        runtime: how ONNX models run (:data:`animeseg.runtime.session.RUNTIMES`); None: ``auto``.
        on_progress: receives a :class:`~animeseg.progress.Step` per image (task ``evaluate``).
        engine: runs each image (default: :class:`~animeseg.engine.LocalEngine`).
    """
    refine = refine_keyword(refine, unexpected, "evaluate")
    check_keywords("evaluate", unexpected, keywords_of(evaluate))
    defaults = model_defaults(model)
    if threshold is None:  # score what `animeseg predict` with this model outputs by default
        threshold = defaults.detect.conf
    settings = eval_settings(model, imgsz=imgsz, conf=conf, iou=iou, max_det=max_det, device=device, runtime=runtime)
    gt = load_ground_truth(data, split, images)
    categories = gt.categories
    seg = segmenter
    if seg is None:
        seg = Segmenter(model, refine, settings)
    mapping = class_map(dict(seg.names), categories, classes)
    if segmenter is None and len(mapping) < len(seg.names):
        seg = Segmenter(model, seg.refiner, settings, classes=sorted(mapping), detector=seg.detector)
    cat_ids = sorted(set(mapping.values()))
    unmapped = [n for c, n in categories.items() if c not in cat_ids]
    if unmapped:
        logger.warning(f"ground-truth categories without a model class are not scored: {', '.join(unmapped)}")
    out = Path(out or Path("runs/eval") / f"{Path(str(model)).stem}-{split}").expanduser().resolve()
    has_refiner = getattr(seg, "refiner", None) is not None
    used_categories = [c for c in gt.coco.dataset["categories"] if int(c["id"]) in cat_ids]

    names = [("raw", "predictions.json")] + ([("refined", "predictions-refined.json")] if has_refiner else [])
    variants = [Variant(n, f, PredictionsBuilder(seg.names, used_categories)) for n, f in names]
    todo = [
        _Image(int(info["id"]), str(info["file_name"]), gt.paths[int(info["id"])], info["height"], info["width"])
        for info in sorted(gt.coco.dataset["images"], key=lambda r: int(r["id"]))
    ]

    def work(img: _Image) -> list[Instances]:
        image = read_image(img.path)
        if image.shape[:2] != (int(img.height), int(img.width)):
            raise InputError(
                img.path,
                f"image is {image.shape[1]}x{image.shape[0]} but the annotations say {img.width}x{img.height}",
            )
        raw = seg.detect(image)
        return [raw, refine_confident(seg, image, raw, threshold)] if has_refiner else [raw]

    failures: list[tuple[str, str]] = []
    ok_ids: list[int] = []
    # a native detector runs images side by side (one inference stream per core); refiners run one at a time
    workers = 1 if has_refiner else int(getattr(seg, "concurrency", 1))
    for done, outcome in enumerate((engine or LocalEngine(workers)).map(work, todo), 1):
        img = outcome.item
        report(on_progress, Step("evaluate", done, len(todo), img.file_name))
        if not outcome.ok:
            failures.append((str(img.path), outcome.error or "failed"))
            for variant in variants:
                variant.predictions.add_error(img.file_name, outcome.error, img.image_id, img.height, img.width)
            continue
        ok_ids.append(img.image_id)
        gt_fg = ground_truth_foreground(gt.coco, img.image_id, cat_ids)
        for variant, inst in zip(variants, outcome.value, strict=True):
            inst = to_ground_truth_classes(inst, mapping, categories)
            variant.predictions.add_ok(img.file_name, img.height, img.width, image_annotations(inst), img.image_id)
            found = inst.masks[inst.scores >= threshold]
            pred_fg = found.any(0) if len(found) else np.zeros_like(gt_fg)
            variant.foreground.append(foreground_metrics(pred_fg, gt_fg))

    if not ok_ids:
        raise AnimesegError(f"{gt.source}: none of its {len(todo)} images could be read")
    results: dict[str, Any] = {}
    for variant in variants:
        variant.predictions.write(out / variant.file_name)
        scores = coco_metrics(gt.coco, variant.predictions.annotations, ok_ids, cat_ids, threshold)
        fg = {k: float(np.mean([m[k] for m in variant.foreground])) for k in ("IoU", "F", "MAE")}
        results[variant.name] = {**scores, "foreground": fg, "predictions": variant.file_name}

    metrics = {
        "model": str(model),
        "out": str(out),
        "ground_truth": {
            "annotations": str(gt.source),
            "split": split,
            "images": len(todo),
            "instances": len(gt.coco.getAnnIds(catIds=cat_ids)),
            "categories": [c["name"] for c in used_categories],
        },
        "class_map": {seg.names[m]: categories[g] for m, g in sorted(mapping.items())},
        "settings": {
            **{k: v for k, v in settings.as_dict().items() if k != "classes"},
            "threshold": threshold,
            "refiner": getattr(getattr(seg, "refiner", None), "name", None),
            "beta2": BETA2,
        },
        "images": {"evaluated": len(ok_ids), "failed": [{"file": f, "error": e} for f, e in failures]},
        "results": results,
    }
    write_json(out / "metrics.json", metrics, indent=2)
    write_text(out / "metrics.md", markdown_table(metrics))
    return metrics
