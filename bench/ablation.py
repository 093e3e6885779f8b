"""The reference study's ablation, end to end, with the same `animeseg` commands docs/experiments.md shows.

Three training mixes, each a ``datasets.yaml`` over the same sources:

* ``mix-a``: anime-segmentation image/mask pairs alone (``mask_pairs``);
* ``mix-b``: the same plus characters composited onto backgrounds (``composite``);
* ``mix-c``: the same plus COCO persons (``coco``, ``person`` -> ``character``).

Each is built (`animeseg data build`), trained (`animeseg train`, the study's defaults) and evaluated
(`animeseg eval`) on one test set; the script prints the Markdown table of docs/experiments.md.

Sources: ``--sources DIR`` is a folder laid out like `animeseg data demo` writes it (``anime-segmentation/{fg,bg,
imgs,masks}``, ``coco/annotations/*.json`` + ``coco/images``); without it the synthetic demo tree is written.
Test set: ``--test-json`` + ``--test-images`` (COCO instances with masks, category ``character``); without them,
``--test-count`` composites of the Ren'Py sprites in ``../shared`` (real anime art, exact masks).

    PYTHONPATH=. python bench/ablation.py --work runs/ablation --model yolov8n-seg.yaml --epochs 30 --imgsz 320
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

MIXES = {
    "mix-a": ["real"],
    "mix-b": ["real", "composites"],
    "mix-c": ["real", "composites", "coco-person"],
}

SOURCES = {
    "real": """  - name: real                # anime-segmentation image/mask pairs
    type: mask_pairs
    images: anime-segmentation/imgs
    masks: anime-segmentation/masks
""",
    "composites": """  - name: composites          # characters pasted on backgrounds, exact masks
    type: composite
    foregrounds: {fg}
    backgrounds: {bg}
    count: {count}
    per_image: [1, 3]
""",
    "coco-person": """  - name: coco-person         # COCO persons as characters; crowd images left out
    type: coco
    annotations: {coco_json}
    images: coco/images
    classes: {{person: character}}
""",
}


def mix_config(name: str, sources: list[str], imgsz: int, **paths: object) -> str:
    head = (
        f"# {name}: {' + '.join(sources)} (written by bench/ablation.py)\n"
        f"out: {name}\nseed: 0\nval_fraction: 0.2\nclasses: [character]\nimgsz: {imgsz}\nsources:\n"
    )
    return head + "".join(SOURCES[s].format(**paths) for s in sources)


def animeseg(*args: str) -> None:
    cmd = [sys.executable, "-m", "animeseg", *args]
    print("$ animeseg " + " ".join(args), flush=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    subprocess.run(cmd, check=True, env=env)


RENPY = ROOT.parent / "shared" / "data" / "renpy-sprites"


def renpy_subset(out: Path, characters: list[str]) -> Path:
    """A folder with ``fg/`` (links to the Ren'Py sprites of ``characters``) and ``bg/`` (links to all backgrounds)."""
    if not (RENPY / "fg").is_dir():
        raise SystemExit(f"{RENPY} is absent: pass --test-json/--test-images and no --renpy-split")
    for sub in ("fg", "bg"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for p in sorted((RENPY / "fg").glob("*.png")):
        if p.name.split()[0] in characters and not (out / "fg" / p.name).exists():
            (out / "fg" / p.name).symlink_to(p)
    for p in sorted((RENPY / "bg").iterdir()):
        if not (out / "bg" / p.name).exists():
            (out / "bg" / p.name).symlink_to(p)
    return out


def renpy_test_set(out: Path, count: int, characters: list[str]) -> tuple[Path, Path]:
    """``count`` Ren'Py composites (640x360) of ``characters`` as a COCO file with one category, ``character``."""
    sys.path.insert(0, str(ROOT))
    from animeseg import cocojson
    from animeseg.io import write_image, write_json
    from bench.composites import make_composites

    root = renpy_subset(out / "sprites", characters)
    images, anns = [], []
    for i, c in enumerate(make_composites(root, count, seed=2024), start=1):
        write_image(out / "images" / f"{c.name}.jpg", c.image, quality=95)
        c.truth.names = {0: "character"}
        images.append(cocojson.image_record(i, f"{c.name}.jpg", *c.image.shape[:2]))
        anns += cocojson.instance_annotations(c.truth, i, len(anns) + 1, with_scores=False)
    gt = out / "instances.json"
    write_json(gt, {"images": images, "annotations": anns, "categories": cocojson.categories(["character"])})
    return gt, out / "images"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("runs/ablation"))
    ap.add_argument("--sources", type=Path, help="source tree like `animeseg data demo` writes (default: the demo)")
    ap.add_argument("--composites", type=int, default=40, help="composites in mix-b and mix-c")
    ap.add_argument("--model", default="yolov8n-seg.yaml")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--test-json", type=Path)
    ap.add_argument("--test-images", type=Path)
    ap.add_argument("--test-count", type=int, default=40)
    ap.add_argument("--mixes", nargs="+", default=list(MIXES))
    ap.add_argument("--table-only", action="store_true", help="only print the table of mixes already run")
    ap.add_argument(
        "--renpy-split",
        action="store_true",
        help="composites of mix-b/c paste the Ren'Py 'sylvie' sprites; the test set holds only the unseen "
        "characters 'eileen' and 'lucy' (without it: demo foregrounds, all Ren'Py characters in the test set)",
    )
    args = ap.parse_args()

    work = args.work.resolve()
    src = (args.sources or work / "src").resolve()
    if args.sources is None and not (src / "datasets.yaml").is_file():
        animeseg("data", "demo", str(src))
    coco_json = next((src / "coco" / "annotations").glob("*.json")).relative_to(src)
    test_characters = ["eileen", "lucy"] if args.renpy_split else ["eileen", "lucy", "sylvie"]
    if args.test_json:
        gt, test_images = args.test_json.resolve(), args.test_images.resolve()
    else:
        gt, test_images = renpy_test_set(work / "test", args.test_count, test_characters)
    fg, bg = "anime-segmentation/fg", "anime-segmentation/bg"
    if args.renpy_split:
        sprites = renpy_subset(work / "train-sprites", ["sylvie"])
        fg, bg = str(sprites / "fg"), str(sprites / "bg")

    started = time.time()
    for mix in [] if args.table_only else args.mixes:
        cfg = src / f"{mix}.yaml"
        cfg.write_text(
            mix_config(mix, MIXES[mix], args.imgsz, count=args.composites, coco_json=coco_json, fg=fg, bg=bg)
        )
        animeseg("data", "build", str(cfg), "--overwrite")
        animeseg(
            "train", "--data", str(cfg), "--model", args.model, "--epochs", str(args.epochs),
            "--imgsz", str(args.imgsz), "--device", args.device, "--project", str(work / "runs"), "--name", mix,
            "--weights-dir", str(work / "weights"), "-a", "exist_ok=true",
        )  # fmt: skip
        animeseg(
            "eval", "--model", str(work / "weights" / f"animeseg-{mix}.pt"), "--data", str(gt),
            "--images", str(test_images), "--imgsz", str(args.imgsz), "--device", args.device,
            "--out", str(work / "eval" / mix),
        )  # fmt: skip
    hours = (time.time() - started) / 3600

    test = json.loads(gt.read_text())
    print(
        f"\n{args.model}, {args.epochs} epochs, imgsz {args.imgsz}, device {args.device} "
        f"({platform.machine()}, {os.cpu_count()} cores), {hours:.2f} h in all; test set {gt.name}: "
        f"{len(test['images'])} images, {len(test['annotations'])} characters"
        f"{' (' + ', '.join(test_characters) + ')' if not args.test_json else ''}\n"
    )
    columns = ["mix", "sources", "train / val images", "mask AP", "mask AP50", "box AP", "fg IoU", "fg F", "fg MAE"]
    print("| " + " | ".join([*columns, "missed", "spurious"]) + " |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for mix in args.mixes:
        manifest = json.loads((src / mix / "manifest.json").read_text())
        r = json.loads((work / "eval" / mix / "metrics.json").read_text())["results"]["raw"]
        cells = [
            mix,
            " + ".join(MIXES[mix]),
            f"{manifest['images']['train']} / {manifest['images']['val']}",
            *(f"{r[g][k]:.3f}" for g, k in (("mask", "AP"), ("mask", "AP50"), ("box", "AP"))),
            *(f"{r['foreground'][k]:.3f}" for k in ("IoU", "F", "MAE")),
            str(r["instances"]["missed"]),
            str(r["instances"]["spurious"]),
        ]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
