"""The learned refiner's recipe steps as a command line (run.sh calls it; needs the [train] extra).

python recipes/anime-refiner/refiner.py samples DATASET OUT          # detector crops of built composites
python recipes/anime-refiner/refiner.py fit SAMPLES... --out DIR      # trains, writes DIR/refiner.pt
python recipes/anime-refiner/refiner.py export DIR/refiner.pt OUT.onnx
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from animeseg.train.refiner import export, fit  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="step", required=True)
    s = sub.add_parser("samples", help="crops of a built composite dataset with the detector's masks")
    s.add_argument("dataset", type=Path)
    s.add_argument("out", type=Path)
    s.add_argument("--model", type=Path, default=None, help="detector (default: the packaged model)")
    s.add_argument("--conf", type=float, default=0.25)
    # pinned, not the model's default: the shipped network's crops were made at 0.7, before the default became 0.5
    s.add_argument("--iou", type=float, default=0.7, help="NMS IoU of the detector")
    s.add_argument("--seed", type=int, default=0)
    f = sub.add_parser("fit", help="train the network")
    f.add_argument("samples", type=Path, nargs="+")
    f.add_argument("--out", type=Path, required=True)
    f.add_argument("--steps", type=int, default=2000)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--threads", type=int, default=2)
    f.add_argument("--lr", type=float, default=3e-3)
    f.add_argument("--init", type=Path, default=None, help="continue from this refiner.pt")
    f.add_argument("--stem", type=int, default=1, help="2: the U-Net at half resolution (about 1/3 of the cost)")
    e = sub.add_parser("export", help="checkpoint -> ONNX")
    e.add_argument("checkpoint", type=Path)
    e.add_argument("onnx", type=Path)
    args = parser.parse_args(argv)
    if args.step == "samples":
        from animeseg.predict import Segmenter
        from animeseg.train.refiner_data import build_samples
        from animeseg.weights import packaged_model

        # detect() alone, no refiner
        seg = Segmenter(args.model or packaged_model(), None, conf=args.conf, iou=args.iou, device="cpu")
        counts = build_samples(
            args.dataset,
            seg.detect,
            args.out,
            seed=args.seed,
            on_image=lambda n: print(f"{n} images", flush=True) if n % 100 == 0 else None,
        )
        print(json.dumps(counts))
    elif args.step == "fit":
        print(
            fit(
                args.samples,
                args.out,
                steps=args.steps,
                seed=args.seed,
                threads=args.threads,
                lr=args.lr,
                init=args.init,
                stem=args.stem,
                log=lambda m: print(m, flush=True),
            )
        )
    else:
        print(export(args.checkpoint, args.onnx))


if __name__ == "__main__":
    main()
