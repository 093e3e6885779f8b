"""Training the learned refiner (PyTorch, the ``[train]`` extra): network, on-the-fly errors and styles, ONNX export.

``recipes/anime-refiner/run.sh`` runs the whole recipe; ``recipes/anime-refiner/refiner.py`` is its command
line (``samples``: :func:`animeseg.train.refiner_data.build_samples`; ``fit``: :func:`fit`; ``export``).

The coarse masks the network learns to correct are half the detector's own (``detected`` samples) and half made
up from the true alpha (``true`` samples): coarse like 1/4-resolution prototype masks, dilated or eroded,
shifted, with a limb cut off, a neighbour's part taken in, or holes. The RGB crops get style changes towards
unseen artists: palette (hue, saturation, channel swaps), line weight, posterisation, blur, grain, JPEG.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from animeseg._lazy import cv2
from animeseg.refine.learned import CHANNELS, MEAN, SIZE, STD, colour_prior
from animeseg.train.refiner_data import ALPHA, OTHERS, OWN, RGB, TRUE_OTHERS

# ----------------------------------------------------------------------------------------------- made-up errors

#: Share of ``detected`` samples trained with the detector's own mask (the rest get made-up errors).
DETECTED_SHARE = 0.6


def _ellipse(shape: tuple[int, int], rng: np.random.Generator, centre: tuple[float, float], size: float) -> np.ndarray:
    out = np.zeros(shape, np.uint8)
    axes = (max(2, int(size * rng.uniform(0.5, 1.0))), max(2, int(size * rng.uniform(0.5, 1.0))))
    cv2.ellipse(out, (int(centre[0]), int(centre[1])), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    return out.astype(bool)


def _random_point(mask: np.ndarray, rng: np.random.Generator, edge: bool) -> tuple[float, float] | None:
    if edge:
        mask = mask & ~cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return None
    k = int(rng.integers(len(ys)))
    return float(xs[k]), float(ys[k])


def coarse(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Like a prototype mask: drawn at 40-90 px across the crop, upsampled, thresholded (bool (S, S))."""
    side = int(rng.integers(40, 90))
    small = cv2.resize(mask.astype(np.float32), (side, side), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), float(rng.uniform(0.3, 1.0)))
    big = cv2.resize(small, mask.shape[::-1], interpolation=cv2.INTER_LINEAR)
    return big >= rng.uniform(0.35, 0.65)


def _cut_extremity(truth: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The part of ``truth`` that sticks out furthest in a random direction (upwards twice as often: hats, hair
    ends, raised arms): what a detector misses on an unseen artist's character (bool (S, S))."""
    ys, xs = np.nonzero(truth)
    if len(ys) < 16:
        return np.zeros_like(truth, bool)
    theta = -np.pi / 2 + rng.normal(0.0, 0.5) if rng.random() < 0.5 else rng.uniform(0, 2 * np.pi)
    proj = xs * np.cos(theta) + ys * np.sin(theta)
    cut = np.quantile(proj, rng.uniform(0.8, 0.97))
    out = np.zeros_like(truth, bool)
    keep = proj > cut
    out[ys[keep], xs[keep]] = True
    return out


def made_up_mask(alpha: np.ndarray, true_others: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A plausible wrong mask for a character whose true alpha is ``alpha`` (uint8 (S, S)): bool (S, S)."""
    truth = alpha >= 128
    m = coarse(truth, rng) if rng.random() < 0.8 else truth.copy()
    s = m.shape[0]
    if rng.random() < 0.4:  # too fat or too thin
        k = int(rng.integers(1, 7))
        op = cv2.dilate if rng.random() < 0.5 else cv2.erode
        m = op(m.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1))).astype(bool)
    if rng.random() < 0.3:  # shifted
        dx, dy = rng.integers(-8, 9, 2)
        m = np.roll(m, (int(dy), int(dx)), (0, 1))
    if rng.random() < 0.3:  # a limb, a tail, a lock of hair missing
        p = _random_point(truth, rng, edge=True)
        if p is not None:
            m &= ~_ellipse(m.shape, rng, p, s * rng.uniform(0.08, 0.3))
    if rng.random() < 0.3:  # the tip of a hat, hair or a raised arm missing
        m &= ~_cut_extremity(truth, rng)
    if rng.random() < 0.3:  # a neighbour's part, or background, taken in
        p = _random_point(true_others, rng, edge=False) if true_others.any() and rng.random() < 0.7 else None
        if p is None:
            p = _random_point(truth, rng, edge=True)
        if p is not None:
            blob = _ellipse(m.shape, rng, p, s * rng.uniform(0.06, 0.2))
            m |= blob & (true_others if true_others.any() and rng.random() < 0.7 else True)
    if rng.random() < 0.15:  # holes
        for _ in range(int(rng.integers(1, 4))):
            p = _random_point(m, rng, edge=False)
            if p is not None:
                m &= ~_ellipse(m.shape, rng, p, s * rng.uniform(0.03, 0.1))
    return m


def others_mask(true_others: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The other instances as a detector would show them: coarse, sometimes missing (bool (S, S))."""
    if not true_others.any() or rng.random() < 0.1:
        return np.zeros_like(true_others, bool)
    m = coarse(true_others, rng)
    if rng.random() < 0.3:
        k = int(rng.integers(1, 5))
        op = cv2.dilate if rng.random() < 0.5 else cv2.erode
        m = op(m.astype(np.uint8), np.ones((k, k), np.uint8)).astype(bool)
    return m


# ----------------------------------------------------------------------------------------------- styles


def restyle(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Style changes towards artists not in training: (S, S, 3) uint8 -> (S, S, 3) uint8."""
    img = rgb
    if rng.random() < 0.5:  # palette: hue turn, saturation and value gains
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV).astype(np.float32)
        hsv[..., 0] = (hsv[..., 0] + rng.uniform(0, 180)) % 180
        hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.4, 1.5), 0, 255)
        hsv[..., 2] = np.clip(hsv[..., 2] * rng.uniform(0.7, 1.2), 0, 255)
        img = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)
    if rng.random() < 0.15:
        img = np.ascontiguousarray(img[..., rng.permutation(3)])
    if rng.random() < 0.08:
        img = np.repeat(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[..., None], 3, 2)
    if rng.random() < 0.25:  # line weight: a min filter thickens dark line art, a max filter thins it
        op = cv2.erode if rng.random() < 0.6 else cv2.dilate
        img = op(img, np.ones((2, 2), np.uint8))
    if rng.random() < 0.3:  # contrast and gamma
        lut = np.clip(((np.arange(256) / 255.0) ** rng.uniform(0.7, 1.4)) * 255 * rng.uniform(0.8, 1.15), 0, 255)
        img = lut.astype(np.uint8)[img]
    if rng.random() < 0.15:  # posterisation (flat cel shading)
        levels = int(rng.integers(4, 12))
        img = (np.round(img / 255.0 * (levels - 1)) * (255.0 / (levels - 1))).astype(np.uint8)
    if rng.random() < 0.25:
        img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.4, 1.6)))
    if rng.random() < 0.15:  # lower resolution art
        f = rng.uniform(0.35, 0.7)
        small = cv2.resize(img, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
        img = cv2.resize(small, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.3:  # grain
        img = np.clip(img + rng.normal(0, rng.uniform(2, 10), img.shape), 0, 255).astype(np.uint8)
    if rng.random() < 0.3:
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(25, 90))])
        if ok:
            img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    return img


def training_pair(
    sample: np.ndarray, kind: int, rng: np.random.Generator, style: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """One stored sample -> (input (6, S, S) float32, target alpha (S, S) float32)."""
    rgb = np.ascontiguousarray(sample[RGB].transpose(1, 2, 0))
    alpha = sample[ALPHA]
    true_others = sample[TRUE_OTHERS] >= 128
    # the detector's masks of training art are nearly right (it was trained on those artists): copying them
    # teaches the network to trust its input, so most samples get made-up errors like an unseen artist's
    if kind == 0 and rng.random() < DETECTED_SHARE:
        own, others = sample[OWN] >= 128, sample[OTHERS] >= 128
    else:
        own, others = made_up_mask(alpha, true_others, rng), others_mask(true_others, rng)
    if style:
        rgb = restyle(rgb, rng)
    x = np.empty((CHANNELS, SIZE, SIZE), np.float32)
    x[:3] = ((rgb.astype(np.float32) - MEAN) / STD).transpose(2, 0, 1)
    x[3], x[4] = own, others
    x[5] = colour_prior(rgb, own)
    y = alpha.astype(np.float32) / 255.0
    if rng.random() < 0.5:
        x, y = x[:, :, ::-1], y[:, ::-1]
    return np.ascontiguousarray(x), np.ascontiguousarray(y)


# ----------------------------------------------------------------------------------------------- network


def build_net(widths: tuple[int, ...] = (16, 24, 40, 64, 96), head: int = 8, stem: int = 1) -> Any:
    """A small U-Net: (B, 6, S, S) -> (B, 1, S, S) alpha logits; S divisible by ``stem * 2 ** (len(widths) - 1)``.

    The encoder has two convolutions per level; the decoder one per level, and only ``head`` channels at full
    resolution, where most of the cost of a U-Net lies on a CPU. ``stem`` 2 runs the whole U-Net at half
    resolution (a stride-2 first convolution) and adds one full-resolution convolution over its upsampled output
    and the input, which redraws the edges: about a third of the arithmetic.
    """
    import torch
    from torch import nn

    def conv(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
        return [
            nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        ]

    class UNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.down = nn.ModuleList([nn.Sequential(*conv(CHANNELS, widths[0], stride=stem))])
            for cin, cout in zip(widths, widths[1:], strict=False):
                self.down.append(nn.Sequential(*conv(cin, cout), *conv(cout, cout)))
            ups = [nn.Sequential(*conv(widths[i + 1] + widths[i], widths[i])) for i in range(len(widths) - 2, 0, -1)]
            self.up = nn.ModuleList([*ups, nn.Sequential(*conv(widths[1] + widths[0], head))])
            self.full = nn.Sequential(*conv(head + CHANNELS, head)) if stem > 1 else None
            self.head = nn.Conv2d(head, 1, 1)
            self.pool = nn.MaxPool2d(2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            inp = x
            skips = []
            for i, blk in enumerate(self.down):
                x = blk(x if i == 0 else self.pool(x))
                skips.append(x)
            x = skips.pop()
            for blk in self.up:
                skip = skips.pop()
                x = nn.functional.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
                x = blk(torch.cat([x, skip], 1))
            if self.full is not None:
                x = nn.functional.interpolate(x, size=inp.shape[-2:], mode="bilinear", align_corners=False)
                x = self.full(torch.cat([x, inp], 1))
            return self.head(x)

    return UNet()


def loss_fn(logits: Any, target: Any) -> Any:
    """Soft-target BCE + soft Dice + L1 on the alpha (edges count in all three)."""
    import torch.nn.functional as F

    p = logits.sigmoid()
    bce = F.binary_cross_entropy_with_logits(logits, target)
    inter = (p * target).sum((1, 2, 3))
    dice = 1 - (2 * inter + 1) / (p.sum((1, 2, 3)) + target.sum((1, 2, 3)) + 1)
    return bce + dice.mean() + (p - target).abs().mean()


def fit(
    samples: list[Path],
    out: Path,
    steps: int = 2000,
    batch: int = 16,
    lr: float = 3e-3,
    seed: int = 0,
    threads: int = 2,
    bf16: bool = True,
    init: Path | None = None,
    log: Any = None,
    stem: int = 1,
) -> Path:
    """Train for ``steps`` batches (AdamW, cosine schedule); writes ``out/refiner.pt`` and ``out/refiner.json``.

    Everything random is seeded, so the same samples, seed and thread count give the same network. ``init``
    continues from an earlier ``refiner.pt`` (a second stage, with its own schedule).
    """
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    data = [np.load(Path(s) / "samples.npy", mmap_mode="r") for s in samples]
    kinds = [np.load(Path(s) / "kinds.npy") for s in samples]
    index = [(d, i) for d, k in enumerate(kinds) for i in range(len(k))]
    start_from = torch.load(init, map_location="cpu") if init is not None else None
    if start_from is not None:
        stem = int(start_from.get("stem", 1))  # a second stage keeps the first one's architecture
    net = build_net(stem=stem)
    if start_from is not None:
        net.load_state_dict(start_from["state_dict"])
    net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    start = time.monotonic()
    seen, running = 0, 0.0
    net.train()
    for step in range(1, steps + 1):
        for g in opt.param_groups:
            g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * (step - 1) / steps))
        picks = rng.integers(len(index), size=batch)
        pairs = [
            training_pair(np.asarray(data[index[p][0]][index[p][1]]), int(kinds[index[p][0]][index[p][1]]), rng)
            for p in picks
        ]
        x = torch.from_numpy(np.stack([p[0] for p in pairs])).to(memory_format=torch.channels_last)
        y = torch.from_numpy(np.stack([p[1] for p in pairs]))[:, None]
        # bf16 autocast: about 2x faster on CPUs with AMX or AVX-512 bf16, weights and loss stay fp32
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = net(x)
        loss = loss_fn(logits.float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        seen += batch
        running = 0.98 * running + 0.02 * loss.item() if step > 1 else loss.item()
        if log is not None and step % 50 == 0:
            log(f"step {step} seen {seen} loss {running:.4f} {seen / (time.monotonic() - start):.1f} crops/s")
    out.mkdir(parents=True, exist_ok=True)
    path = out / "refiner.pt"
    torch.save({"state_dict": net.state_dict(), "steps": steps, "seen": seen, "seed": seed, "stem": stem}, path)
    minutes = round((time.monotonic() - start) / 60, 1)
    (out / "refiner.json").write_text(
        json.dumps(
            {
                "steps": steps,
                "seen": seen,
                "minutes": minutes,
                "batch": batch,
                "lr": lr,
                "seed": seed,
                "stem": stem,
                "samples": [str(s) for s in samples],
            },
            indent=1,
        )
    )
    return path


def export(checkpoint: Path, onnx_path: Path) -> Path:
    """The trained network as ONNX: input ``input`` (B, 6, S, S) float32, output ``logits`` (B, 1, S, S)."""
    import torch

    state = torch.load(checkpoint, map_location="cpu")
    net = build_net(stem=int(state.get("stem", 1)))
    net.load_state_dict(state["state_dict"])
    net.eval()
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        net,
        torch.zeros(1, CHANNELS, SIZE, SIZE),
        str(onnx_path),
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    return onnx_path
