"""Procedural anime-like art for the demo source and the tests: characters, backgrounds and simple scenes.

Nothing here needs a file or the network. Characters are drawn at 2x with OpenCV and shrunk with area averaging,
which gives the soft alpha edges of real cut-outs; each is a pure function of its random generator.
"""

from __future__ import annotations

import colorsys
import math

import numpy as np

from animeseg._lazy import cv2

SS = 2  # supersampling factor

SKIN = [(255, 228, 210), (250, 214, 190), (236, 190, 160), (255, 236, 224), (200, 150, 115)]
HAIR = [
    (250, 150, 190),  # pink
    (90, 140, 235),  # blue
    (250, 225, 130),  # blonde
    (40, 35, 50),  # black
    (215, 220, 235),  # silver
    (120, 200, 140),  # green
    (160, 110, 210),  # purple
    (200, 90, 60),  # red-brown
]
EYES = [(70, 130, 230), (200, 60, 80), (60, 170, 110), (150, 90, 200), (230, 160, 40)]
LINE = (40, 30, 45)


def _hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return int(r * 255), int(g * 255), int(b * 255)


def _darker(c: tuple[int, int, int], f: float = 0.75) -> tuple[int, int, int]:
    return tuple(int(v * f) for v in c)  # type: ignore[return-value]


class _Canvas:
    """Paints colour and alpha together at 2x; coordinates are given in output pixels."""

    def __init__(self, width: int, height: int):
        self.rgb = np.zeros((height * SS, width * SS, 3), np.uint8)
        self.alpha = np.zeros((height * SS, width * SS), np.uint8)

    @staticmethod
    def _pts(points) -> np.ndarray:
        return (np.asarray(points, np.float64) * SS).round().astype(np.int32).reshape(-1, 1, 2)

    def poly(self, points, colour, outline: bool = True) -> None:
        p = self._pts(points)
        cv2.fillPoly(self.rgb, [p], colour)
        cv2.fillPoly(self.alpha, [p], 255)
        if outline:
            cv2.polylines(self.rgb, [p], True, LINE, SS)

    def ellipse(self, centre, axes, colour, angle: float = 0.0, outline: bool = True, alpha: bool = True) -> None:
        c = (round(centre[0] * SS), round(centre[1] * SS))
        a = (max(1, round(axes[0] * SS)), max(1, round(axes[1] * SS)))
        cv2.ellipse(self.rgb, c, a, angle, 0, 360, colour, -1)
        if alpha:
            cv2.ellipse(self.alpha, c, a, angle, 0, 360, 255, -1)
        if outline:
            cv2.ellipse(self.rgb, c, a, angle, 0, 360, LINE, SS)

    def limb(self, points, width: float, colour) -> None:
        p = self._pts(points)
        w = max(1, round(width * SS))
        cv2.polylines(self.rgb, [p], False, LINE, w + 2 * SS)
        cv2.polylines(self.alpha, [p], False, 255, w + 2 * SS)
        cv2.polylines(self.rgb, [p], False, colour, w)

    def line(self, points, width: float, colour, alpha: bool = True) -> None:
        p = self._pts(points)
        cv2.polylines(self.rgb, [p], False, colour, max(1, round(width * SS)), cv2.LINE_AA)
        if alpha:
            cv2.polylines(self.alpha, [p], False, 255, max(1, round(width * SS)))

    def result(self) -> np.ndarray:
        """(H, W, 4) uint8 RGBA at output size, soft edges from the 2x drawing."""
        h, w = self.alpha.shape[0] // SS, self.alpha.shape[1] // SS
        a = self.alpha.astype(np.float32) / 255.0
        premul = self.rgb.astype(np.float32) * a[..., None]
        premul = cv2.resize(premul, (w, h), interpolation=cv2.INTER_AREA)
        alpha = cv2.resize(a, (w, h), interpolation=cv2.INTER_AREA)
        rgb = premul / np.maximum(alpha[..., None], 1e-6)
        out = np.dstack([np.clip(rgb + 0.5, 0, 255), np.clip(alpha * 255 + 0.5, 0, 255)]).astype(np.uint8)
        out[alpha <= 0] = 0
        return out


def character(rng: np.random.Generator, height: int = 360) -> np.ndarray:
    """One standing anime-like character as RGBA (H, W, 4) uint8 on a transparent background.

    Head, hair (back hair, bangs, optional twin tails or ponytail and an ahoge strand), big eyes, torso, skirt or
    shorts, arms in varied poses (a hand on the hip leaves a hole between arm and body) and legs; colours and
    proportions vary with ``rng``.
    """
    H = int(height)
    W = int(round(H * 0.62))
    cv = _Canvas(W, H)
    cx = W / 2 + rng.uniform(-0.02, 0.02) * W
    skin = SKIN[int(rng.integers(len(SKIN)))]
    hair = HAIR[int(rng.integers(len(HAIR)))]
    top = _hsv(rng.random(), rng.uniform(0.3, 0.8), rng.uniform(0.6, 1.0))
    bottom = _hsv(rng.random(), rng.uniform(0.3, 0.9), rng.uniform(0.3, 0.9))
    legwear = skin if rng.random() < 0.5 else _hsv(rng.random(), rng.uniform(0, 0.3), rng.uniform(0.1, 0.95))
    eye = EYES[int(rng.integers(len(EYES)))]
    head_y, head_rx, head_ry = 0.18 * H, 0.12 * H, 0.135 * H
    style = rng.choice(["long", "short", "twintails", "ponytail"])
    u = H / 100.0  # one percent of the height

    # back hair
    if style == "long":
        length = rng.uniform(0.45, 0.62) * H
        cv.poly(
            [
                (cx - 1.35 * head_rx, head_y),
                (cx + 1.35 * head_rx, head_y),
                (cx + 1.5 * head_rx, length),
                (cx, length + 3 * u),
                (cx - 1.5 * head_rx, length),
            ],
            _darker(hair, 0.85),
        )
    elif style == "twintails":
        for side in (-1, 1):
            tail = [
                (cx + side * 1.0 * head_rx, head_y - 0.6 * head_ry),
                (cx + side * 2.1 * head_rx, head_y),
                (cx + side * 2.4 * head_rx, head_y + rng.uniform(0.25, 0.4) * H),
                (cx + side * 1.7 * head_rx, head_y + 0.2 * H),
                (cx + side * 1.1 * head_rx, head_y),
            ]
            cv.poly(tail, _darker(hair, 0.9))
    elif style == "ponytail":
        side = 1 if rng.random() < 0.5 else -1
        cv.poly(
            [
                (cx + side * 0.6 * head_rx, head_y - 0.9 * head_ry),
                (cx + side * 1.9 * head_rx, head_y - 0.4 * head_ry),
                (cx + side * 2.0 * head_rx, head_y + 0.22 * H),
                (cx + side * 1.3 * head_rx, head_y + 0.1 * H),
            ],
            _darker(hair, 0.9),
        )
    cv.ellipse((cx, head_y - 0.05 * head_ry), (1.18 * head_rx, 1.12 * head_ry), _darker(hair, 0.9))

    # legs and shoes
    hip_y, foot_y = 0.6 * H, 0.95 * H
    spread = rng.uniform(0.03, 0.09) * H
    leg_w = 0.055 * H
    shoe = _hsv(rng.random(), 0.5, rng.uniform(0.2, 0.6))
    for side in (-1, 1):
        knee = (cx + side * (0.045 * H + spread * 0.4), 0.78 * H)
        foot = (cx + side * (0.04 * H + spread), foot_y - 0.02 * H)
        cv.limb([(cx + side * 0.045 * H, hip_y), knee, foot], leg_w, legwear)
        cv.ellipse((foot[0] + side * 0.012 * H, foot_y - 0.012 * H), (0.045 * H, 0.022 * H), shoe)

    # torso, skirt or shorts
    sh_y, waist_y = 0.335 * H, 0.52 * H
    sh_w, waist_w = rng.uniform(0.13, 0.16) * H, rng.uniform(0.085, 0.1) * H
    cv.poly([(cx - 0.03 * H, 0.29 * H), (cx + 0.03 * H, 0.29 * H), (cx + 0.03 * H, sh_y), (cx - 0.03 * H, sh_y)], skin)
    cv.poly([(cx - sh_w, sh_y), (cx + sh_w, sh_y), (cx + waist_w, waist_y), (cx - waist_w, waist_y)], top)
    cv.poly([(cx - 0.03 * H, sh_y), (cx, sh_y + 0.05 * H), (cx + 0.03 * H, sh_y)], (245, 245, 250))  # collar
    if rng.random() < 0.6:
        hem = rng.uniform(0.64, 0.72) * H
        flare = rng.uniform(0.17, 0.24) * H
        cv.poly([(cx - waist_w, waist_y), (cx + waist_w, waist_y), (cx + flare, hem), (cx - flare, hem)], bottom)
    else:
        hem = 0.66 * H
        for side in (-1, 1):
            cv.poly(
                [
                    (cx, waist_y),
                    (cx + side * waist_w, waist_y),
                    (cx + side * 0.13 * H, hem),
                    (cx + side * 0.01 * H, hem),
                ],
                bottom,
            )

    # arms: down, raised (waving) or a hand on the hip (a hole between arm and body)
    arm_w = 0.045 * H
    for side in (-1, 1):
        shoulder = (cx + side * (sh_w - 0.015 * H), sh_y + 0.015 * H)
        pose = rng.choice(["down", "raised", "hip"], p=[0.5, 0.2, 0.3])
        if pose == "down":
            a = math.radians(rng.uniform(8, 28))
            elbow = (shoulder[0] + side * math.sin(a) * 0.13 * H, shoulder[1] + math.cos(a) * 0.13 * H)
            hand = (elbow[0] + side * math.sin(a * 0.6) * 0.12 * H, elbow[1] + math.cos(a * 0.6) * 0.12 * H)
        elif pose == "raised":
            elbow = (shoulder[0] + side * 0.1 * H, shoulder[1] - 0.02 * H)
            hand = (elbow[0] + side * 0.03 * H, elbow[1] - 0.11 * H)
        else:
            elbow = (shoulder[0] + side * 0.1 * H, shoulder[1] + 0.1 * H)
            hand = (cx + side * (waist_w + 0.01 * H), waist_y - 0.01 * H)
        cv.limb([shoulder, elbow], arm_w, top)
        cv.limb([elbow, hand], arm_w * 0.85, skin)
        cv.ellipse(hand, (0.025 * H, 0.025 * H), skin)

    # head, face
    cv.ellipse((cx, head_y), (head_rx, head_ry), skin)
    for side in (-1, 1):
        ex, ey = cx + side * 0.048 * H, head_y + 0.025 * H
        cv.ellipse((ex, ey), (0.027 * H, 0.036 * H), (255, 255, 255), outline=False)
        cv.ellipse((ex, ey + 0.004 * H), (0.021 * H, 0.031 * H), eye, outline=False)
        cv.ellipse((ex, ey + 0.008 * H), (0.011 * H, 0.017 * H), _darker(eye, 0.4), outline=False)
        cv.ellipse((ex - 0.008 * H, ey - 0.012 * H), (0.007 * H, 0.007 * H), (255, 255, 255), outline=False)
        brow = [(ex - 0.026 * H, ey - 0.047 * H), (ex, ey - 0.054 * H), (ex + 0.026 * H, ey - 0.049 * H)]
        cv.line(brow, 0.0045 * H, _darker(hair, 0.5), alpha=False)
        cv.ellipse((ex + side * 0.012 * H, ey + 0.05 * H), (0.018 * H, 0.008 * H), (250, 170, 180), outline=False)
    cv.line(
        [(cx - 0.012 * H, head_y + 0.09 * H), (cx, head_y + 0.095 * H), (cx + 0.012 * H, head_y + 0.09 * H)],
        0.006 * H,
        (170, 60, 70),
        alpha=False,
    )

    # bangs: a zig-zag fringe over the forehead, and an ahoge strand
    n = int(rng.integers(4, 7))
    fringe = [(cx - 1.15 * head_rx, head_y + 0.2 * head_ry)]
    for i in range(n + 1):
        t = i / n
        x = cx - 1.05 * head_rx + 2.1 * head_rx * t
        fringe.append((x, head_y - 0.75 * head_ry + 0.25 * head_ry * abs(2 * t - 1)))
        if i < n:
            fringe.append((x + 1.05 * head_rx / n, head_y - rng.uniform(0.05, 0.35) * head_ry))
    fringe += [
        (cx + 1.15 * head_rx, head_y + 0.2 * head_ry),
        (cx + 1.2 * head_rx, head_y - 0.6 * head_ry),
        (cx, head_y - 1.22 * head_ry),
        (cx - 1.2 * head_rx, head_y - 0.6 * head_ry),
    ]
    cv.poly(fringe, hair)
    if rng.random() < 0.7:
        base = (cx + rng.uniform(-0.3, 0.3) * head_rx, head_y - 1.1 * head_ry)
        cv.line([base, (base[0] + 2 * u, base[1] - 5 * u), (base[0] + 5 * u, base[1] - 6 * u)], 1.2 * u, hair)
    return cv.result()


def background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A simple outdoor scene as RGB (H, W, 3) uint8: sky gradient, clouds, ground, buildings or trees."""
    h, w = int(height), int(width)
    horizon = int(h * rng.uniform(0.55, 0.75))
    hue = rng.choice([0.58, 0.6, 0.07, 0.75, 0.55])
    top, bottom = np.array(_hsv(hue, 0.55, 0.85), np.float32), np.array(_hsv(hue + 0.02, 0.2, 1.0), np.float32)
    t = np.linspace(0, 1, horizon, dtype=np.float32)[:, None, None]
    img = np.zeros((h, w, 3), np.float32)
    img[:horizon] = top * (1 - t) + bottom * t
    ground = np.array(_hsv(rng.choice([0.28, 0.1, 0.0]), rng.uniform(0.2, 0.6), rng.uniform(0.35, 0.7)), np.float32)
    t = np.linspace(0, 1, h - horizon, dtype=np.float32)[:, None, None]
    img[horizon:] = ground * (1.1 - 0.4 * t)
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(2, 6))):  # clouds
        x, y = int(rng.integers(w)), int(rng.integers(max(1, horizon // 2)))
        for k in range(3):
            cv2.ellipse(
                img,
                (x + k * 18, y + (k % 2) * 6),
                (int(rng.integers(20, 45)), 14),
                0,
                0,
                360,
                (250, 250, 252),
                -1,
                cv2.LINE_AA,
            )
    if rng.random() < 0.5:  # buildings with windows
        x = 0
        while x < w:
            bw, bh = int(rng.integers(40, 110)), int(rng.integers(h // 6, int(h * 0.55)))
            colour = _hsv(rng.random(), rng.uniform(0.05, 0.3), rng.uniform(0.4, 0.85))
            cv2.rectangle(img, (x, horizon - bh), (x + bw, horizon), colour, -1)
            for wy in range(horizon - bh + 8, horizon - 12, 18):
                for wx in range(x + 6, x + bw - 10, 16):
                    cv2.rectangle(
                        img,
                        (wx, wy),
                        (wx + 8, wy + 10),
                        (255, 240, 180) if rng.random() < 0.4 else _darker(colour, 0.6),
                        -1,
                    )
            x += bw + int(rng.integers(0, 20))
    else:  # trees
        for _ in range(int(rng.integers(3, 9))):
            x = int(rng.integers(w))
            size = int(rng.integers(25, 70))
            cv2.rectangle(img, (x - 5, horizon - size), (x + 5, horizon + 10), (110, 80, 50), -1)
            cv2.circle(
                img, (x, horizon - size - size // 2), size, _hsv(0.3, 0.6, rng.uniform(0.35, 0.65)), -1, cv2.LINE_AA
            )
    grain = rng.normal(0, 3, img.shape)
    return np.clip(img + grain, 0, 255).astype(np.uint8)


def paste(canvas: np.ndarray, rgba: np.ndarray, x: int, y: int, height: int) -> np.ndarray:
    """Paste ``rgba`` scaled to ``height`` pixels with its top-left corner at (x, y); returns the pasted alpha
    channel on the canvas (H, W) uint8. ``canvas`` (RGB uint8) is changed in place; parts off-canvas are cut."""
    s = height / rgba.shape[0]
    fw, fh = max(1, round(rgba.shape[1] * s)), max(1, round(rgba.shape[0] * s))
    fg = cv2.resize(rgba, (fw, fh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    H, W = canvas.shape[:2]
    alpha_full = np.zeros((H, W), np.uint8)
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + fw, W), min(y + fh, H)
    if x0 >= x1 or y0 >= y1:
        return alpha_full
    part = fg[y0 - y : y1 - y, x0 - x : x1 - x]
    a = part[..., 3:].astype(np.float32) / 255.0
    region = canvas[y0:y1, x0:x1].astype(np.float32)
    canvas[y0:y1, x0:x1] = np.clip(region * (1 - a) + part[..., :3] * a + 0.5, 0, 255).astype(np.uint8)
    alpha_full[y0:y1, x0:x1] = part[..., 3]
    return alpha_full


def scene(
    rng: np.random.Generator, width: int, height: int, people: int, sprite_height: tuple[float, float] = (0.55, 0.9)
) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """A background with ``people`` characters pasted left to right (later ones in front).

    Returns (image RGB, visible instance masks (H, W) bool after occlusion, soft alpha (H, W) uint8 per
    character before occlusion).
    """
    img = background(rng, width, height)
    alphas = []
    for i in range(people):
        ch = int(rng.uniform(*sprite_height) * height)
        sprite = character(rng, ch)
        slot = width / max(people, 1)
        x = int(i * slot + rng.uniform(-0.15, 0.35) * slot)
        y = int(height - ch * rng.uniform(0.85, 1.02))
        alphas.append(paste(img, sprite, x, y, ch))
    masks = [a >= 128 for a in alphas]
    visible = []
    for i, m in enumerate(masks):
        v = m.copy()
        for later in masks[i + 1 :]:
            v &= ~later
        visible.append(v)
    return img, visible, alphas
