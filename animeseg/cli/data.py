"""`animeseg data` commands: build, check, demo."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

app = typer.Typer(
    help="Build a YOLO-seg training set from a datasets.yaml, check any YOLO-seg dataset, or write a demo source.",
    no_args_is_help=True,
)


@app.command("build")
def build(
    config: Path = typer.Argument(
        Path("datasets.yaml"), help="The dataset config (sources, classes, split...); see docs/data.md."
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Output folder; default: the config's `out` (relative to the config file)."
    ),
    only: str | None = typer.Option(
        None, "--only", help="Build only these sources, by name, comma-separated (e.g. --only composites,coco)."
    ),
    workers: int = typer.Option(
        1, "--workers", "-w", min=1, help="Worker processes that make images in parallel (labels stay identical)."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an existing dataset folder (one with a manifest.json) when done."
    ),
) -> None:
    """Build one YOLO-seg dataset (plus COCO RLE ground truth, provenance, manifest, preview) from a config."""
    from animeseg.cli.render import ProgressBars
    from animeseg.data.build import build_dataset

    names = [n.strip() for n in only.split(",") if n.strip()] if only else None
    with ProgressBars() as bars:
        manifest = build_dataset(config, out=out, only=names, workers=workers, overwrite=overwrite, on_progress=bars)
    print_build_summary(manifest)


@app.command("check")
def check(
    folder: Path = typer.Argument(..., help="A YOLO-seg dataset: a folder with data.yaml, or images/ + labels/."),
    fast: bool = typer.Option(
        False, "--fast", help="Read only image headers (size) instead of decoding every image fully."
    ),
) -> None:
    """Validate a YOLO-seg dataset and print class and size statistics; exit code 1 when errors are found."""
    from animeseg.cli.render import ProgressBars
    from animeseg.data.check import check_dataset

    with ProgressBars() as bars:
        report = check_dataset(folder, decode=not fast, on_progress=bars)
    print_check_report(report)
    if report["errors"]:
        raise typer.Exit(1)


@app.command("demo")
def demo(
    folder: Path = typer.Argument(Path("demo"), help="Folder to write the demo source tree and datasets.yaml into."),
    seed: int = typer.Option(0, "--seed", help="Random seed of the synthetic drawings."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into a folder that is not empty."),
) -> None:
    """Write a small synthetic source tree (anime-segmentation layout, COCO, LabelMe) and its datasets.yaml."""
    from animeseg.cli.console import console
    from animeseg.data.demo import write_demo

    path = write_demo(folder, seed=seed, overwrite=overwrite)
    console.print(f"demo sources written; build them with: animeseg data build {path}", soft_wrap=True)


def print_build_summary(manifest: dict[str, Any]) -> None:
    """One row per source: images per split, instances, instances dropped, images left out (empty or crowd),
    bad files; the details are in manifest.json."""
    rows = []
    for t in manifest["sources"]:
        rows.append(
            (
                t["name"],
                t["images"]["train"],
                t["images"]["val"],
                t["instances"]["train"] + t["instances"]["val"],
                sum(t["dropped"].values()),
                t["empty_images_left_out"] + t["crowd_images_skipped"],
                t["skipped_count"],
            )
        )
    images, instances = manifest["images"], manifest["instances"]
    bad = sum(t["skipped_count"] for t in manifest["sources"])
    rows.append(("total", images["train"], images["val"], instances["train"] + instances["val"], "", "", bad))
    cols = ("source", "train", "val", "instances", "dropped", "left out", "bad files")
    from animeseg.cli.console import console, summary_table

    console.print(summary_table(f"dataset written to {manifest['out']}", cols, rows))


def print_check_report(report: dict[str, Any], show: int = 30) -> None:
    """The report as tables and one line per problem (the first ``show`` of each kind)."""
    from animeseg.cli.console import console, summary_table

    rows = []
    for split, s in report["splits"].items():
        inst = sum(s["instances"].values())
        rows.append(
            (
                split,
                s["images"],
                s["negatives"],
                inst,
                s["instances_per_image"]["mean"],
                f"{s['width']['min']}-{s['width']['max']}",
                f"{s['height']['min']}-{s['height']['max']}",
            )
        )
    cols = ("split", "images", "negatives", "instances", "per image", "width", "height")
    console.print(summary_table(f"dataset {report['folder']}", cols, rows))
    classes = sorted({c for s in report["splits"].values() for c in s["instances"]})
    if classes:
        split_names = list(report["splits"])
        class_rows = [(c, *(report["splits"][s]["instances"].get(c, 0) for s in split_names)) for c in classes]
        console.print(summary_table("instances per class", ("class", *split_names), class_rows))
    for kind, colour in (("error", "red"), ("warning", "yellow")):
        items = report[f"{kind}_list"]
        for item in items[:show]:
            console.print(f"[{colour}]{kind}:[/] {item['file']}: {item['problem']}", soft_wrap=True, highlight=False)
        extra = report[f"{kind}s"] - min(show, len(items))
        if extra > 0:
            console.print(f"[{colour}]... and {extra} more {kind}s[/]")
    verdict = "[green]no errors[/]" if not report["errors"] else f"[red]{report['errors']} errors[/]"
    console.print(f"{verdict}, {report['warnings']} warnings")
