"""The zoomed-out second look: only where the first look found nothing, masks back at the image's own size."""

from __future__ import annotations

import numpy as np

from animeseg.instances import Instances
from animeseg.predict import Segmenter
from animeseg.settings import DetectSettings
from animeseg.zoom import zoomed_out


class SmallOnly:
    """A detector that, like one trained on full figures, finds the red figure only when it fills less than half
    of the image's height; records the images it saw."""

    names = {0: "character"}

    def __init__(self) -> None:
        self.settings = DetectSettings(imgsz=320)
        self.seen: list[tuple[int, int]] = []

    def detect(self, image: np.ndarray, settings: DetectSettings) -> Instances:
        self.seen.append(image.shape[:2])
        red = (image[..., 0] > 200) & (image[..., 1] < 60)
        ys = np.flatnonzero(red.any(1))
        h, w = image.shape[:2]
        if len(ys) == 0 or (ys[-1] - ys[0] + 1) > 0.5 * h:
            return Instances.empty(h, w, self.names)
        inst = Instances(np.zeros((1, 4)), [0.9], [0], red[None], dict(self.names))
        inst.boxes = inst.boxes_from_masks()
        return inst


def portrait(h: int = 300, w: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """A red figure cut by the frame on three sides, on white: the image and its true mask."""
    image = np.full((h, w, 3), 255, np.uint8)
    truth = np.zeros((h, w), bool)
    truth[40:, 30:170] = True
    image[truth] = (230, 20, 20)
    return image, truth


def test_zoomed_out_finds_a_frame_filling_figure_at_full_size():
    image, truth = portrait()
    det = SmallOnly()
    assert len(det.detect(image, det.settings)) == 0
    found = zoomed_out(det.detect, image, det.settings, 2.5)
    assert len(found) == 1 and found.masks.shape == (1, 300, 200)
    iou = (found.masks[0] & truth).sum() / (found.masks[0] | truth).sum()
    assert iou > 0.95
    assert np.allclose(found.boxes[0], [30, 40, 170, 300], atol=2)
    assert max(det.seen[-1]) == 320  # one pass at the detector's own scale


def test_segmenter_looks_again_only_when_nothing_is_found():
    image, _ = portrait()
    det = SmallOnly()
    off = Segmenter(detector=det, refine=None)
    assert len(off.detect(image)) == 0 and len(det.seen) == 1
    on = Segmenter(detector=det, refine=None, zoom_out=2.5)
    assert len(on.detect(image)) == 1 and len(det.seen) == 3
    small = np.full((300, 200, 3), 255, np.uint8)
    small[100:200, 80:120] = (230, 20, 20)  # found at once: no second look
    assert len(on.detect(small)) == 1 and len(det.seen) == 4
