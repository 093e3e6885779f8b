"""`animeseg data` commands: build, check, demo."""

from __future__ import annotations

from pathlib import Path

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
    from animeseg.data.build import build_dataset

    names = [n.strip() for n in only.split(",") if n.strip()] if only else None
    build_dataset(config, out=out, only=names, workers=workers, overwrite=overwrite)


@app.command("check")
def check(
    folder: Path = typer.Argument(..., help="A YOLO-seg dataset: a folder with data.yaml, or images/ + labels/."),
    fast: bool = typer.Option(
        False, "--fast", help="Read only image headers (size) instead of decoding every image fully."
    ),
) -> None:
    """Validate a YOLO-seg dataset and print class and size statistics; exit code 1 when errors are found."""
    from animeseg.data.check import check_dataset, print_report

    report = check_dataset(folder, decode=not fast)
    print_report(report)
    if report["errors"]:
        raise typer.Exit(1)


@app.command("demo")
def demo(
    folder: Path = typer.Argument(Path("demo"), help="Folder to write the demo source tree and datasets.yaml into."),
    seed: int = typer.Option(0, "--seed", help="Random seed of the synthetic drawings."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into a folder that is not empty."),
) -> None:
    """Write a small synthetic source tree (anime-segmentation layout, COCO, LabelMe) and its datasets.yaml."""
    from animeseg.console import console
    from animeseg.data.demo import write_demo

    path = write_demo(folder, seed=seed, overwrite=overwrite)
    console.print(f"demo sources written; build them with: animeseg data build {path}", soft_wrap=True)
