"""The looks of real art in composites (close-ups, huddles, backdrops, renderings, effects, pages): each keeps
its labels exact, is re-made from its provenance, and does what its name says."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_data_composite import make_sources, write_config

from animeseg.data.build import build_dataset
from animeseg.data.painting import effects_cover
from animeseg.data.sources.composite import remake
from animeseg.io import read_image
from animeseg.masks import decode_rle, mask_iou

LOOKS = {
    "closeup": "    closeup: 1.0\n",
    "huddle": "    huddle: 1.0\n",
    "backdrop": "    backdrop: 1.0\n",
    "render": "    render: 1.0\n",
    "effects": "    effects: [2, 3]\n",
    "page": "    page: 1.0\n    panels: [2, 3]\n",
}


def build(tmp_path: Path, name: str, extra: str = "", count: int = 8):
    src = tmp_path / "src"
    if not src.exists():
        make_sources(src, n_fg=5, n_bg=2)
    cfg = write_config(tmp_path, src / "fg", src / "bg", count=count, imgsz=192, extra=extra)
    out = tmp_path / name
    build_dataset(cfg, out=out)
    records = [json.loads(line) for line in (out / "provenance.jsonl").read_text().splitlines()]
    return src, out, records


def annotations(out: Path) -> dict[str, list[np.ndarray]]:
    """image path -> its masks as written (COCO RLE), in label order."""
    result = {}
    for split in ("train", "val"):
        doc = json.loads((out / "annotations" / f"{split}.json").read_text())
        for im in doc["images"]:
            anns = [a for a in doc["annotations"] if a["image_id"] == im["id"]]
            result[f"images/{split}/{im['file_name']}"] = [decode_rle(a["segmentation"]) for a in anns]
    return result


@pytest.mark.parametrize("look", sorted(LOOKS))
def test_look_is_remade_exactly_from_provenance(tmp_path, look):
    src, out, records = build(tmp_path, look, LOOKS[look])
    written = annotations(out)
    drawn = 0
    for r in records:
        image, masks = remake(r, src / "fg", src / "bg")
        on_disk = written[r["image"]]
        assert len(masks) == len(on_disk)
        for m, w in zip(masks, on_disk, strict=True):
            assert mask_iou(m, w) >= 0.999
        assert np.abs(image.astype(int) - read_image(out / r["image"])).mean() < 6  # JPEG loss only
        drawn += len(masks)
    assert drawn >= len(records)


def test_closeups_are_cut_by_the_frame(tmp_path):
    _, out, records = build(tmp_path, "closeup", LOOKS["closeup"])
    for r in records:
        assert r["framing"] == "closeup" and 1 <= len(r["foregrounds"]) <= 2
    for masks in annotations(out).values():
        for m in masks:
            h = m.shape[0]
            rows = np.flatnonzero(m.any(axis=1))
            assert rows[-1] == h - 1  # cut by the bottom edge
            assert rows[0] < 0.25 * h  # head in the top quarter


def test_huddled_characters_overlap(tmp_path):
    _, out, records = build(tmp_path, "huddle", LOOKS["huddle"])
    overlapping = 0
    for r in records:
        if len(r["foregrounds"]) < 2:
            continue
        assert r["framing"] == "huddle"
        m = np.array([f["matrix"] for f in r["foregrounds"]])
        centres_x = m[:, 0, 2]
        overlapping += int(np.ptp(centres_x) < 0.6 * r["size"][0])
    assert overlapping >= 3


@pytest.mark.parametrize("look", ["backdrop", "render"])
def test_backdrops_and_renderings_change_pixels_not_labels(tmp_path, look):
    _, plain, _ = build(tmp_path, "plain")
    _, out, records = build(tmp_path, look, LOOKS[look])
    for p in sorted((plain / "labels").rglob("*.txt")):
        assert p.read_bytes() == (out / p.relative_to(plain)).read_bytes()
    changed = 0
    for r in records:
        key = "backdrop" if look == "backdrop" else "render"
        assert key in (r["background"] if look == "backdrop" else r)
        diff = np.abs(read_image(out / r["image"]).astype(int) - read_image(plain / r["image"])).mean()
        changed += int(diff > 10)
    assert changed == len(records)


def test_effects_hide_what_they_cover(tmp_path):
    _, out, records = build(tmp_path, "effects", LOOKS["effects"], count=12)
    _, plain, _ = build(tmp_path, "plain", count=12)
    written, before = annotations(out), annotations(plain)
    hidden = 0
    for r in records:
        assert 2 <= len(r["effects"]) <= 3
        cover = effects_cover(r)
        for m, m0 in zip(written[r["image"]], before[r["image"]], strict=False):
            assert not (m & cover).any()
            hidden += int(m0.sum() - m.sum())
    assert hidden > 0


def test_pages_hold_panels_and_borders_hide(tmp_path):
    _, out, records = build(tmp_path, "page", LOOKS["page"])
    written = annotations(out)
    for r in records:
        page = r["page"]
        assert 2 <= len(page["panels"]) <= 3
        w, h = r["size"]
        inside = np.zeros((h, w), bool)
        for p in page["panels"]:
            x0, y0, x1, y1 = p["box"]
            inside[y0:y1, x0:x1] = True
            assert p["record"]["size"] == [x1 - x0, y1 - y0]
        edges = np.zeros((h, w), bool)  # the middle line of each panel's border
        for p in page["panels"]:
            x0, y0, x1, y1 = p["box"]
            edges[y0, x0:x1] = edges[y1 - 1, x0:x1] = edges[y0:y1, x0] = edges[y0:y1, x1 - 1] = True
        image = read_image(out / r["image"])
        assert image[edges].mean() < 40  # inked
        for m in written[r["image"]]:
            assert not (m & ~inside).any()  # never in a gutter
            assert not (m & edges).any()  # borders hide what they cover
