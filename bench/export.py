"""Benchmarks of the ONNX exports against PyTorch; prints Markdown for docs/benchmarks.md.

    PYTHONPATH=. python bench/export.py                      # everything (about 25 min on a 2-core CPU)
    PYTHONPATH=. python bench/export.py --skip-sam           # detectors only (about 3 min)
    PYTHONPATH=. python bench/export.py --sam-checkpoint sam_vit_b_01ec64.pth   # real SAM weights

Sections:

1. **Detector**: the network's forward pass on one letterboxed 640x640 image (what ``predict`` runs per image,
   without pre/post-processing), PyTorch (fused, as Ultralytics predicts) against ONNX Runtime FP32, INT8
   (``--int8``: dynamic quantisation) and FP16 (``--half``), for YOLOv8n-seg and YOLOv8m-seg architectures
   (random weights: speed does not depend on their values), plus each export's parity figures.
2. **SAM encoder**: one image through vit_b's image encoder (preprocessing included), PyTorch against ONNX
   Runtime FP32 and INT8.
3. **SAM decoder**: 1, 5 and 20 boxes of a 640x360 image in one call, masks upsampled to full size:
   ``SamPredictor.predict_torch`` against the exported decoder, FP32 and INT8.
4. **INT8 accuracy cost**: each SAM export's parity figures against PyTorch on the built-in sample image.

The SAM model is a randomly initialised vit_b unless ``--sam-checkpoint`` is given (no download happens; with
random weights the masks are arbitrary, so the INT8 accuracy figures are indicative only). Every time is the
median of ``--repeats`` runs after one warm-up run, with ``--threads`` threads for both PyTorch and ONNX Runtime.
Exports go to ``--work`` (a temporary folder by default; vit_b takes about 700 MB there).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Both runtimes are timed in one process, interleaved: idle threads must sleep rather than spin, or one
# runtime's spinning pool steals the cores from the other's next run (PyTorch measured 10x slower that way).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from animeseg import export as ex  # noqa: E402
from animeseg.export.detector import letterbox  # noqa: E402
from animeseg.refine.sam_onnx import OnnxSamRefiner, prepare_image  # noqa: E402


def median_times(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds per call of each function, timed round-robin after one warm-up call each.

    Round-robin (A, B, C, A, B, C, ...) rather than A x n then B x n: on a shared machine the load drifts, and
    interleaving exposes every variant to the same drift, so their ratios stay meaningful.
    """
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # see OMP_WAIT_POLICY above
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms" if seconds < 10 else f"{seconds:,.1f} s"


# ---------------------------------------------------------------------------------------------------- detector
def bench_detector(arch: str, work: Path, imgsz: int, repeats: int, threads: int) -> list[str]:
    from animeseg._offline import import_ultralytics

    torch.manual_seed(0)
    yolo = import_ultralytics().YOLO(f"{arch}.yaml")
    pt = work / f"{arch}.pt"
    yolo.save(pt)
    image = ex.sample_image(360, 640)[0]
    x = letterbox(image, imgsz)
    net = import_ultralytics().YOLO(pt).model.float().fuse().eval()
    variants = {"ONNX Runtime FP32": {}, "ONNX Runtime INT8": {"int8": True}, "ONNX Runtime FP16": {"half": True}}
    fns: dict[str, Callable[[], object]] = {"PyTorch (fused)": lambda: net(torch.from_numpy(x))}
    files, parity = {"PyTorch (fused)": pt}, {"PyTorch (fused)": ""}
    for label, kw in variants.items():
        path = ex.export_detector(pt, imgsz=imgsz, out=work / "det", **kw)
        precision = "int8" if kw.get("int8") else "fp16" if kw.get("half") else "fp32"
        report = ex.check_detector(pt, path, image=image, imgsz=imgsz, precision=precision)
        parity[label] = (
            f"mask IoU min {report.metrics['mask IoU (min)']:.4f}, "
            f"score diff {report.metrics['score diff (max)']:.1e} ({'pass' if report.passed else 'FAIL'})"
        )
        s = session(path, threads)
        feed = {s.get_inputs()[0].name: x}
        fns[label] = lambda s=s, feed=feed: s.run(None, feed)
        files[label] = path
    with torch.inference_mode():
        times = median_times(fns, repeats)
    base = times["PyTorch (fused)"]
    rows = []
    for label, t in times.items():
        mb = files[label].stat().st_size / 2**20
        rows.append(f"| {arch} | {label} | {ms(t)} | {base / t:.1f}x | {mb:.1f} MB | {parity[label]} |")
        print(rows[-1], flush=True)
    return rows


# --------------------------------------------------------------------------------------------------------- SAM
def bench_sam(checkpoint: Path, work: Path, repeats: int, threads: int) -> tuple[list[str], list[str], list[str]]:
    from segment_anything import SamPredictor

    from animeseg.sam import load_sam

    sam = load_sam(checkpoint)
    folders = {
        "FP32": ex.export_sam(checkpoint, out=work / "sam_fp32", sam=sam),
        "INT8": ex.export_sam(checkpoint, out=work / "sam_int8", int8=True, sam=sam),
    }
    image, _ = ex.sample_image(360, 640)
    h, w = image.shape[:2]
    size = sam.image_encoder.img_size
    predictor = SamPredictor(sam)

    # encoder: PyTorch's set_image (resize, normalise, pad, encode) against prepare_image + encoder.onnx
    # (the refiner's sessions do not spin-wait and its encoder keeps no memory arena, like session() here)
    refiners = {k: OnnxSamRefiner(f, threads=threads, providers=["CPUExecutionProvider"]) for k, f in folders.items()}
    fns: dict[str, Callable[[], object]] = {"PyTorch": lambda: predictor.set_image(image)}
    fns.update({f"ONNX Runtime {k}": (lambda r=r: r.embed(image)) for k, r in refiners.items()})
    with torch.inference_mode():
        times = median_times(fns, repeats)
    sizes = {"PyTorch": checkpoint.stat().st_size}
    sizes.update({f"ONNX Runtime {k}": (f / "encoder.onnx").stat().st_size for k, f in folders.items()})
    enc_rows = []
    for label, t in times.items():
        enc_rows.append(f"| {label} | {ms(t)} | {times['PyTorch'] / t:.1f}x | {sizes[label] / 2**20:.0f} MB |")
        print(enc_rows[-1], flush=True)
    assert prepare_image(image, size)[0].shape == (1, 3, size, size)
    embeddings = {k: r.embed(image) for k, r in refiners.items()}

    # decoder: B boxes in one call, masks at the original size
    rng = np.random.default_rng(0)
    dec_rows = []
    for n in (1, 5, 20):
        xy = rng.uniform(0, 1, (n, 2, 2)) * [w, h]
        boxes = np.concatenate([xy.min(1), xy.max(1)], 1).astype(np.float32)
        tb = predictor.transform.apply_boxes_torch(torch.as_tensor(boxes), (h, w))
        fns = {"PyTorch": lambda tb=tb: predictor.predict_torch(None, None, boxes=tb)}
        fns.update({k: (lambda r=r, e=embeddings[k], b=boxes: r.decode(e, b, (h, w))) for k, r in refiners.items()})
        with torch.inference_mode():
            times = median_times(fns, max(repeats, 5))
        t_pt = times.pop("PyTorch")
        cells = [f"| {n} | {ms(t_pt)} ({ms(t_pt / n)}/box)"]
        cells += [f"{ms(t)} ({ms(t / n)}/box, {t_pt / t:.1f}x)" for t in times.values()]
        dec_rows.append(" | ".join(cells) + " |")
        print(dec_rows[-1], flush=True)

    acc_rows = []
    for k, folder in folders.items():
        r = ex.check_sam(folder, sam)
        m = r.metrics
        acc_rows.append(
            f"| {k} | {m['mask IoU (min)']:.4f} | {m['mask IoU (mean)']:.4f} | {m['logit diff (max)']:.2e} | "
            f"{m['predicted IoU diff (max)']:.2e} | {m['embedding diff (max)']:.2e} | "
            f"{'pass' if r.passed else 'FAIL'} |"
        )
        print(acc_rows[-1], flush=True)
    return enc_rows, dec_rows, acc_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archs", default="yolov8n-seg,yolov8m-seg", help="detector architectures to time")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--sam-checkpoint", type=Path, help="SAM checkpoint (default: a random vit_b)")
    parser.add_argument("--skip-sam", action="store_true")
    parser.add_argument("--skip-detector", action="store_true")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs (median); SAM's encoder uses 3 at most")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, help="folder for the exports (default: a temporary folder)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="animeseg-bench-export-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        out = [
            f"Machine: {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
            f"onnxruntime {__import__('onnxruntime').__version__}.",
            "",
        ]
        if not args.skip_detector:
            out += [
                f"Detector forward pass, one {args.imgsz}x{args.imgsz} image (median of {args.repeats}):",
                "",
                "| model | runtime | time | speed-up | file | parity vs PyTorch |",
                "|---|---|---|---|---|---|",
            ]
            for arch in args.archs.split(","):
                out += bench_detector(arch.strip(), work, args.imgsz, args.repeats, args.threads)
            out.append("")
        if not args.skip_sam:
            checkpoint = args.sam_checkpoint
            if checkpoint is None:
                from animeseg.sam import build_sam, save_sam

                torch.manual_seed(0)
                checkpoint = save_sam(build_sam("vit_b"), work / "sam_vit_b_random.pth")
            enc, dec, acc = bench_sam(checkpoint, work, min(args.repeats, 3), args.threads)
            out += [
                f"SAM image encoder ({checkpoint.name}), one 640x360 image, preprocessing included:",
                "",
                "| runtime | time | speed-up | file |",
                "|---|---|---|---|",
                *enc,
                "",
                "SAM prompt encoder + mask decoder, boxes of a 640x360 image in one call, full-size masks:",
                "",
                "| boxes | PyTorch | ONNX Runtime FP32 | ONNX Runtime INT8 |",
                "|---|---|---|---|",
                *dec,
                "",
                "SAM exports against PyTorch on the built-in sample image (4 boxes x 3 candidates):",
                "",
                "| export | mask IoU min | mask IoU mean | logit diff max | predicted IoU diff max | "
                "embedding diff max | check |",
                "|---|---|---|---|---|---|---|",
                *acc,
                "",
            ]
    print("\n".join(out))


if __name__ == "__main__":
    main()
