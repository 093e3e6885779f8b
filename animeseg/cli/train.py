"""`animeseg train`."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any

import typer

from animeseg.errors import AnimesegError


class Arch(str, Enum):
    yolo = "yolo"
    maskrcnn = "maskrcnn"


def train(
    data: Path = typer.Option(
        None,
        "--data",
        "-d",
        help="Built dataset (data.yaml or its folder), any Ultralytics segmentation data.yaml, or a datasets.yaml "
        "build config (built first; reused when already built from the same config). Optional with --resume.",
    ),
    arch: Arch = typer.Option(
        "yolo",
        "--arch",
        metavar="[yolo|maskrcnn]",
        help="Architecture: yolo (Ultralytics YOLOv8-seg) or maskrcnn (torchvision Mask R-CNN trained with PyTorch "
        "Lightning; needs the maskrcnn extra).",
    ),
    model: str = typer.Option(
        None,
        "--model",
        "-m",
        metavar="PATH",
        help="Weights to fine-tune (.pt), or an architecture such as yolov8n-seg.yaml for random weights "
        "(default: yolov8m-seg.pt). maskrcnn: starting weights (default: the backbone's official COCO file in "
        "weights/), or the last.ckpt to --resume. Never downloaded: get official weights with "
        "`animeseg weights download`.",
        show_default=False,
    ),
    backbone: str = typer.Option(
        "resnet50_fpn_v2",
        "--backbone",
        metavar="[resnet50_fpn_v2|mobilenet_v3_large_fpn]",
        help="maskrcnn: resnet50_fpn_v2 (torchvision's Mask R-CNN v2) or mobilenet_v3_large_fpn (lighter, "
        "CPU-friendly).",
    ),
    epochs: int = typer.Option(None, "--epochs", "-e", min=1, help="Epochs to train (default: 100)."),
    imgsz: int = typer.Option(None, "--imgsz", min=32, help="Training image size in pixels (default: 640)."),
    batch: float = typer.Option(
        None,
        "--batch",
        "-b",
        help="Images per batch; -1 = AutoBatch (the study's choice, single GPU; 16 on CPU); 0-1 = fraction of GPU "
        "memory (default: -1).",
    ),
    device: str = typer.Option(
        None,
        "--device",
        metavar="DEVICE",
        help="cpu, 0, or several GPUs as 0,1,2,3 (Ultralytics DDP) (default: GPU 0 if any, else cpu).",
    ),
    devices: int = typer.Option(
        None,
        "--devices",
        min=1,
        help="maskrcnn: GPUs per node for Lightning's DDP (default: those --device names, else 1).",
    ),
    num_nodes: int = typer.Option(1, "--num-nodes", min=1, help="maskrcnn: machines taking part in Lightning's DDP."),
    project: Path = typer.Option(Path("runs/train"), "--project", help="Folder that holds the run folders."),
    name: str = typer.Option(
        None,
        "--name",
        "-n",
        help="Run folder name (default: <model>-<dataset folder>); also selects the run to resume.",
    ),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Continue an interrupted run: --project/--name, or --model path/to/last.pt, or the latest run.",
    ),
    from_scratch: bool = typer.Option(
        False, "--from-scratch", help="Same architecture as --model, random initial weights (no weights file needed)."
    ),
    optimizer: str = typer.Option(
        None, "--optimizer", metavar="NAME", help="SGD, AdamW, Adam, ... or auto (the study's choice) (default: auto)."
    ),
    lr0: float = typer.Option(
        None, "--lr0", help="Initial learning rate (default: 0.01); ignored by Ultralytics with --optimizer auto."
    ),
    momentum: float = typer.Option(None, "--momentum", help="SGD momentum / Adam beta1 (default: 0.937)."),
    weight_decay: float = typer.Option(None, "--weight-decay", help="Weight decay (default: 0.0005)."),
    dropout: float = typer.Option(None, "--dropout", help="Classification-head dropout (default: 0)."),
    arg: list[str] = typer.Option(
        None,
        "--arg",
        "-a",
        metavar="KEY=VALUE",
        help="Any further Ultralytics train argument as key=value; repeat it (e.g. -a mosaic=0.5 -a patience=20).",
    ),
    weights_dir: Path = typer.Option(
        None,
        "--weights-dir",
        help="Where the best weights and their .json sidecar are copied (default: $ANIMESEG_WEIGHTS, else the "
        "checkout's weights/, else ./weights: where `animeseg predict` looks first).",
    ),
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Show Ultralytics' (or Lightning's) own log and per-batch progress."
    ),
    build_workers: int = typer.Option(
        1, "--build-workers", min=1, help="Worker processes when a datasets.yaml has to be built first."
    ),
) -> None:
    """Train a YOLOv8-seg (default) or Mask R-CNN model on an animeseg dataset (offline; resumable)."""
    from animeseg.cli.console import console, summary_table
    from animeseg.cli.render import ProgressBars
    from animeseg.train import parse_extra
    from animeseg.train import train as run_train

    if arch == Arch.maskrcnn:
        yolo_only = {"--optimizer": optimizer, "--dropout": dropout, "--arg": arg or None}
        given = [k for k, v in yolo_only.items() if v is not None]
        if given:
            raise AnimesegError(f"{', '.join(given)}: YOLO training options; --arch maskrcnn does not take them")
        from animeseg.train.maskrcnn import train_maskrcnn

        with ProgressBars() as bars:
            result = train_maskrcnn(
                data,
                backbone=backbone,
                model=model,
                epochs=epochs,
                imgsz=imgsz,
                batch=None if batch is None else int(batch),
                device=device,
                devices=devices,
                num_nodes=num_nodes,
                project=project,
                name=name,
                resume=resume,
                from_scratch=from_scratch,
                lr0=lr0,
                momentum=momentum,
                weight_decay=weight_decay,
                weights_dir=weights_dir,
                verbose=verbose,
                workers=build_workers,
                on_progress=bars,
            )
        if result is not None:  # None on DDP ranks other than 0
            _summary(console, summary_table, result)
        return
    if devices is not None or num_nodes != 1:
        raise AnimesegError("--devices/--num-nodes are for --arch maskrcnn; YOLO takes several GPUs as --device 0,1")
    with ProgressBars() as bars:
        result = run_train(
            data,
            model or "yolov8m-seg.pt",
            epochs=epochs,
            imgsz=imgsz,
            batch=batch,
            device=device,
            project=project,
            name=name,
            resume=resume,
            from_scratch=from_scratch,
            optimizer=optimizer,
            lr0=lr0,
            momentum=momentum,
            weight_decay=weight_decay,
            dropout=dropout,
            extra=parse_extra(arg),
            weights_dir=weights_dir,
            verbose=verbose,
            workers=build_workers,
            on_progress=bars,
        )
    _summary(console, summary_table, result)


def _summary(console: Any, summary_table: Any, result: Any) -> None:
    m = result.sidecar["metrics"]
    rows = [
        ("architecture", result.sidecar.get("architecture", "yolo")),
        ("weights", str(result.weights)),
        ("sidecar", str(result.weights.with_suffix(".json"))),
        ("run folder", str(result.run)),
        ("epochs completed", result.sidecar["epochs_completed"]),
        ("mask mAP50-95", m.get("metrics/mAP50-95(M)", "n/a")),
        ("mask mAP50", m.get("metrics/mAP50(M)", "n/a")),
        ("box mAP50-95", m.get("metrics/mAP50-95(B)", "n/a")),
    ]
    console.print(summary_table("Training finished", ["", "value"], rows))
