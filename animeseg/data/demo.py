"""``animeseg data demo DIR``: a small synthetic source tree to try ``animeseg data build`` on, offline, in seconds.

Layout (every source type the builder reads, in the formats real tools write):

* ``anime-segmentation/fg/`` transparent characters, ``bg/`` backgrounds, ``imgs/`` + ``masks/`` real-style
  image/mask pairs: the layout of the public anime-segmentation dataset;
* ``coco/annotations/instances_demo.json`` + ``coco/images/``: COCO-2017 style, ``person`` and ``dog``
  categories, polygons (one with several parts and a 4-number part), compressed and uncompressed RLE, and an image
  with a crowd region;
* ``labelme/``: LabelMe files as versions 3.x (without and with ``shape_type``), 4.x and 5.x write them
  (``group_id``, ``imageData`` embedded or null, ``mask`` and ``circle`` shapes, an ``__ignore__`` region,
  Windows paths);
* ``datasets.yaml`` building all of it into ``DIR/dataset``.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from animeseg._lazy import cv2
from animeseg.data import synth
from animeseg.errors import AnimesegError
from animeseg.io import encode_image, write_image, write_json, write_text
from animeseg.masks import encode_rle, mask_to_box, mask_to_contours

DEMO_YAML = """\
# Demo dataset mix written by `animeseg data demo`: every source type on small synthetic data.
# Build it with `animeseg data build {dir}/datasets.yaml`; paths are relative to this file.
out: dataset                  # output folder
seed: 0                       # same seed + same config = byte-identical labels
val_fraction: 0.2             # share of each source that goes to validation
classes: [character]          # the one class the model learns
imgsz: 320                    # long side of written images (larger originals are downscaled)
sources:
  - name: composites          # characters pasted on backgrounds, with exact masks
    type: composite
    foregrounds: anime-segmentation/fg
    backgrounds: anime-segmentation/bg
    count: 40                 # composites to make
    per_image: [1, 3]         # characters per composite
  - name: real                # real-style images with one foreground mask each
    type: mask_pairs
    images: anime-segmentation/imgs
    masks: anime-segmentation/masks
  - name: coco-person         # COCO file: persons become characters, crowd images are left out
    type: coco
    annotations: coco/annotations/instances_demo.json
    images: coco/images
    classes: {{person: character}}
  - name: labelme             # LabelMe files of several versions
    type: labelme
    folder: labelme
    classes: {{person: character, character: character}}
"""


def _b64_file(image: np.ndarray, ext: str = ".jpg") -> str:
    return base64.b64encode(encode_image(image, ext, quality=90)).decode("ascii")


def _b64_mask(mask: np.ndarray) -> str:
    """A mask the way LabelMe stores one: a PNG of the uint8 0/1 array, base64."""
    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _outline(mask: np.ndarray, epsilon: float = 1.0) -> list[list[float]]:
    """The largest outer contour of a mask as LabelMe points ``[[x, y], ...]`` (floats, as the tool saves)."""
    contours = mask_to_contours(mask, min_area=4)
    if not contours:
        return []
    c = cv2.approxPolyDP(contours[0].reshape(-1, 1, 2), epsilon, True).reshape(-1, 2)
    return [[round(float(x), 4), round(float(y), 4)] for x, y in c]


def _coco_polygons(mask: np.ndarray) -> list[list[float]]:
    out = []
    for c in mask_to_contours(mask, min_area=4):
        c = cv2.approxPolyDP(c.reshape(-1, 1, 2), 0.8, True).reshape(-1, 2)
        if len(c) >= 3:
            out.append([round(float(v), 2) for v in c.reshape(-1)])
    return out


def _shape(label: str, points, shape_type: str | None, version: int, group_id=None, mask=None) -> dict[str, Any]:
    """A LabelMe shape with the keys (and key order) the given major version writes."""
    if version == 30:  # 3.x before shape_type
        return {"label": label, "line_color": None, "fill_color": None, "points": points}
    if version == 3:
        return {
            "label": label,
            "line_color": None,
            "fill_color": None,
            "points": points,
            "shape_type": shape_type,
            "flags": {},
        }
    if version == 4:
        return {"label": label, "points": points, "group_id": group_id, "shape_type": shape_type, "flags": {}}
    shape = {
        "label": label,
        "points": points,
        "group_id": group_id,
        "description": "",
        "shape_type": shape_type,
        "flags": {},
    }
    shape["mask"] = mask
    return shape


def _labelme_file(version: int, shapes, image_path: str, image_data: str | None, h: int, w: int) -> dict[str, Any]:
    if version == 30:
        return {
            "shapes": shapes,
            "lineColor": [0, 255, 0, 128],
            "fillColor": [255, 0, 0, 128],
            "imagePath": image_path,
            "imageData": image_data,
        }
    doc: dict[str, Any] = {"version": {3: "3.16.7", 4: "4.5.13", 5: "5.4.1"}[version], "flags": {}, "shapes": shapes}
    if version == 3:
        doc |= {"lineColor": [0, 255, 0, 128], "fillColor": [255, 0, 0, 128]}
    return doc | {"imagePath": image_path, "imageData": image_data, "imageHeight": h, "imageWidth": w}


def write_labelme_examples(folder: Path, rng: np.random.Generator) -> list[Path]:
    """LabelMe files of every version in ``folder`` (with their images); returns the JSON paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []

    # 3.x without shape_type: labels 'person', image embedded (no image file next to it)
    img, vis, _ = synth.scene(rng, 320, 240, 2)
    shapes = [_shape("person", _outline(m), None, 30) for m in vis if m.any()]
    doc = _labelme_file(30, shapes, "scene_01.jpg", _b64_file(img), 240, 320)
    paths.append(write_json(folder / "scene_01.json", doc, indent=2))

    # 3.x with shape_type: instance labels person-1, person-2; person-2 drawn as two polygons (split by a pole)
    img, vis, _ = synth.scene(rng, 320, 240, 2)
    pole_x = int(np.mean(np.nonzero(vis[1])[1]))
    cv2.rectangle(img, (pole_x - 4, 0), (pole_x + 4, 239), (90, 90, 100), -1)
    pole = np.zeros((240, 320), bool)
    pole[:, pole_x - 4 : pole_x + 5] = True
    left, right = vis[1] & ~pole, vis[1] & ~pole
    left[:, pole_x:] = False
    right[:, :pole_x] = False
    shapes = [
        _shape("person-1", _outline(vis[0] & ~pole), "polygon", 3),
        _shape("person-2", _outline(left), "polygon", 3),
        _shape("person-2", _outline(right), "polygon", 3),
    ]
    write_image(folder / "scene_02.jpg", img, quality=92)
    paths.append(
        write_json(folder / "scene_02.json", _labelme_file(3, shapes, "scene_02.jpg", None, 240, 320), indent=2)
    )

    # 4.x: group_id joins two parts of one character; a rectangle 'sign' (not mapped); a round mascot as a circle
    img, vis, _ = synth.scene(rng, 320, 240, 1)
    m = vis[0]
    ys = np.nonzero(m.any(1))[0]
    cut = int(ys[0] + 0.45 * (ys[-1] - ys[0]))
    top, bottom = m.copy(), m.copy()
    top[cut:] = False
    bottom[:cut] = False
    cx, cy, r = 255, 60, 22
    cv2.circle(img, (cx, cy), r, (250, 200, 90), -1, cv2.LINE_AA)
    cv2.rectangle(img, (20, 20), (80, 60), (200, 60, 60), -1)
    shapes = [
        _shape("character", _outline(top), "polygon", 4, group_id=1),
        _shape("character", _outline(bottom), "polygon", 4, group_id=1),
        _shape("sign", [[20.0, 20.0], [80.0, 60.0]], "rectangle", 4),
        _shape("character", [[float(cx), float(cy)], [float(cx + r), float(cy)]], "circle", 4),
    ]
    write_image(folder / "scene_03.jpg", img, quality=92)
    doc = _labelme_file(4, shapes, "scene_03.jpg", _b64_file(img), 240, 320)
    paths.append(write_json(folder / "scene_03.json", doc, indent=2))

    # 5.x: a mask shape (AI-assisted annotation) and a polygon; image in a sub-folder named with Windows separators
    img, vis, _ = synth.scene(rng, 320, 240, 2)
    x1, y1, x2, y2 = (int(v) for v in mask_to_box(vis[0]))
    crop = vis[0][y1:y2, x1:x2]
    shapes = [
        _shape("character", [[float(x1), float(y1)], [float(x2 - 1), float(y2 - 1)]], "mask", 5, mask=_b64_mask(crop)),
        _shape("character", _outline(vis[1]), "polygon", 5),
    ]
    write_image(folder / "images" / "scene_04.jpg", img, quality=92)
    paths.append(
        write_json(folder / "scene_04.json", _labelme_file(5, shapes, "images\\scene_04.jpg", None, 240, 320), indent=2)
    )

    # 5.x: an __ignore__ region over a crowd in the distance (handled like a COCO crowd region)
    img, vis, _ = synth.scene(rng, 320, 240, 1, sprite_height=(0.6, 0.8))
    crowd = np.zeros((240, 320), bool)
    for k in range(4):
        crowd |= synth.paste(img, synth.character(rng, 50), 180 + 28 * k, 110, 50) >= 128
    shapes = [
        _shape("character", _outline(vis[0] & ~crowd), "polygon", 5),
        _shape("__ignore__", [[176.0, 106.0], [300.0, 106.0], [300.0, 162.0], [176.0, 162.0]], "polygon", 5),
    ]
    write_image(folder / "scene_05.jpg", img, quality=92)
    paths.append(
        write_json(folder / "scene_05.json", _labelme_file(5, shapes, "scene_05.jpg", None, 240, 320), indent=2)
    )

    # 5.x: imagePath from another computer (absolute Windows path): the image next to the file is used
    img, vis, _ = synth.scene(rng, 320, 240, 2)
    shapes = [_shape("character", _outline(m), "polygon", 5) for m in vis if m.any()]
    write_image(folder / "scene_06.jpg", img, quality=92)
    doc = _labelme_file(5, shapes, "C:\\Users\\artist\\Pictures\\scene_06.jpg", None, 240, 320)
    paths.append(write_json(folder / "scene_06.json", doc, indent=2))
    return paths


def write_coco_example(root: Path, rng: np.random.Generator, images: int = 8) -> Path:
    """A COCO-2017-style file in ``root/annotations`` with its images in ``root/images``; returns the JSON path.

    Image 3 holds a crowd region (``iscrowd: 1``, uncompressed RLE) of small people; persons are written as
    polygons, some as compressed and some as uncompressed RLE, one polygon with an extra 4-number part.
    """
    info = {
        "description": "animeseg demo (synthetic, COCO-2017 layout)",
        "url": "",
        "version": "1.0",
        "year": 2017,
        "contributor": "animeseg",
        "date_created": "2017/09/01",
    }
    licenses = [{"url": "http://creativecommons.org/licenses/by/2.0/", "id": 4, "name": "Attribution License"}]
    recs, anns = [], []
    aid = 900100
    for i in range(images):
        iid = 1000 + i
        w, h = (320, 240) if i % 2 else (300, 300)
        people = int(rng.integers(1, 4))
        img, vis, _ = synth.scene(rng, w, h, people, sprite_height=(0.5, 0.85))
        extra = []
        if i % 3 == 1:  # a dog: a category the mapping drops
            dog = np.zeros((h, w), np.uint8)
            dx, dy = int(w * 0.75), int(h * 0.85)
            cv2.ellipse(dog, (dx, dy), (28, 14), 0, 0, 360, 1, -1)
            cv2.circle(dog, (dx + 26, dy - 12), 11, 1, -1)
            img[dog > 0] = (150, 105, 60)
            extra.append((18, dog.astype(bool)))
        if i == 3:  # a crowd far away
            crowd = np.zeros((h, w), bool)
            for k in range(5):
                crowd |= synth.paste(img, synth.character(rng, 40), 20 + 22 * k, int(h * 0.45), 40) >= 128
            vis = [v & ~crowd for v in vis]
            anns.append(_ann(aid, iid, 1, _uncompressed(crowd), crowd, iscrowd=1))  # COCO stores crowds this way
            aid += 1
        file_name = f"{iid:012d}.jpg"
        write_image(root / "images" / file_name, img, quality=90)
        recs.append(
            {
                "license": 4,
                "file_name": file_name,
                "coco_url": f"http://images.cocodataset.org/demo/{file_name}",
                "height": h,
                "width": w,
                "date_captured": "2013-11-14 16:28:13",
                "flickr_url": "",
                "id": iid,
            }
        )
        for k, m in enumerate(vis):
            if not m.any():
                continue
            mode = (i + k) % 4
            if mode == 1:
                seg: Any = encode_rle(m)
            elif mode == 2:
                seg = _uncompressed(m)
            else:
                seg = _coco_polygons(m)
                if mode == 3:
                    seg = seg + [[float(v) for v in seg[0][:4]]]  # a degenerate 4-number part, as COCO has some
            anns.append(_ann(aid, iid, 1, seg, m))
            aid += 1
        for cat, m in extra:
            anns.append(_ann(aid, iid, cat, _coco_polygons(m), m))
            aid += 1
    cats = [
        {"supercategory": "person", "id": 1, "name": "person"},
        {"supercategory": "animal", "id": 18, "name": "dog"},
    ]
    doc = {"info": info, "licenses": licenses, "images": recs, "annotations": anns, "categories": cats}
    return write_json(root / "annotations" / "instances_demo.json", doc)


def _uncompressed(mask: np.ndarray) -> dict[str, Any]:
    """COCO uncompressed RLE: column-major run lengths starting with a run of zeros."""
    flat = mask.astype(np.uint8).reshape(-1, order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    edges = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(edges).tolist()
    if flat[0]:
        runs = [0] + runs
    return {"counts": runs, "size": [int(mask.shape[0]), int(mask.shape[1])]}


def _ann(aid: int, iid: int, cat: int, seg: Any, mask: np.ndarray, iscrowd: int = 0) -> dict[str, Any]:
    x1, y1, x2, y2 = mask_to_box(mask)
    return {
        "segmentation": seg,
        "area": float(mask.sum()),
        "iscrowd": iscrowd,
        "image_id": iid,
        "bbox": [x1, y1, x2 - x1, y2 - y1],
        "category_id": cat,
        "id": aid,
    }


def write_anime_segmentation(root: Path, rng: np.random.Generator, fg: int = 12, bg: int = 6, pairs: int = 8) -> None:
    """``fg/`` RGBA characters, ``bg/`` backgrounds and ``imgs/`` + ``masks/`` pairs under ``root``."""
    for i in range(fg):
        sprite = synth.character(rng, int(rng.integers(300, 420)))
        write_image(root / "fg" / f"char_{i:03d}.png", sprite)
    sizes = [(640, 400), (512, 512), (800, 360), (1200, 300), (480, 360), (600, 450)]
    for i in range(bg):
        w, h = sizes[i % len(sizes)]
        write_image(root / "bg" / f"bg_{i:03d}.jpg", synth.background(rng, w, h), quality=90)
    for i in range(pairs):
        img, _, alphas = synth.scene(rng, 360, 300, int(rng.integers(1, 3)))
        soft = np.max(np.stack(alphas), axis=0)  # soft-edged greyscale masks, as in anime-segmentation
        write_image(root / "imgs" / f"real_{i:03d}.jpg", img, quality=92)
        write_image(root / "masks" / f"real_{i:03d}.png", soft)


def write_demo(folder: str | Path, seed: int = 0, overwrite: bool = False) -> Path:
    """Write the demo source tree into ``folder``; returns the path of its ``datasets.yaml``."""
    folder = Path(folder).expanduser().resolve()
    if folder.exists() and not folder.is_dir():
        raise AnimesegError(f"{folder}: exists and is not a folder")
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise AnimesegError(f"{folder}: folder exists and is not empty; pass --overwrite to write the demo into it")
    rng = np.random.default_rng(seed)
    write_anime_segmentation(folder / "anime-segmentation", rng)
    write_coco_example(folder / "coco", rng)
    write_labelme_examples(folder / "labelme", rng)
    return write_text(folder / "datasets.yaml", DEMO_YAML.format(dir=folder.name))
