"""`predict --track --stabilize`: masks consistent along a track. Behaviour on synthetic moving characters whose
true masks are known, with a "detector" whose masks wobble around the truth from frame to frame: flicker goes
down, a fast jump is followed (not lagged), fast motion leaves no trailing ghost, a crossing does not leak, a
missed frame is carried, the refiner's alphas are stabilised with the masks. No timing."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli as cli

from animeseg._lazy import cv2
from animeseg.data import synth
from animeseg.instances import Instances
from animeseg.masks import mask_iou
from animeseg.motion import centre_shift, estimate_motion
from animeseg.stabilize import MaskStabilizer
from animeseg.track import TrackingSegmenter

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.clips import temporal_scores  # noqa: E402

H, W = 180, 320


def _scene(positions: list[list[tuple[int, int]]], seed: int = 0) -> tuple[list[np.ndarray], list[Instances]]:
    """Frames of synthetic characters (one per list in ``positions``: its top-left corner per frame, later ones
    in front) over a synthetic background, and the true visible masks (``track_ids`` = the character's index)."""
    rng = np.random.default_rng(seed)
    background = synth.background(rng, W, H)
    sprites = [synth.character(rng, 140) for _ in positions]
    frames, truth = [], []
    for t in range(len(positions[0])):
        canvas = background.copy()
        alphas = [synth.paste(canvas, s, *p[t], height=140) >= 128 for s, p in zip(sprites, positions, strict=True)]
        visible = [a & ~np.any(alphas[k + 1 :], axis=0) if k + 1 < len(alphas) else a for k, a in enumerate(alphas)]
        inst = Instances(np.zeros((len(visible), 4)), np.ones(len(visible)), np.zeros(len(visible)), np.array(visible))
        inst.boxes = inst.boxes_from_masks()
        inst.track_ids = np.arange(len(visible))
        frames.append(canvas)
        truth.append(inst)
    return frames, truth


def _wobble(mask: np.ndarray, rng: np.random.Generator, amount: float = 1.5, bloat: float = 1.0) -> np.ndarray:
    """A detector's mask of a character: the true edge pushed out by ``bloat`` pixels and wobbling by about
    ``amount`` pixels, differently in every frame (smooth noise along the outline)."""
    m8 = mask.astype(np.uint8)
    inside = cv2.distanceTransform(m8, cv2.DIST_L2, 3) - cv2.distanceTransform(1 - m8, cv2.DIST_L2, 3)
    noise = cv2.GaussianBlur(rng.standard_normal(mask.shape).astype(np.float32), (0, 0), 4)
    noise *= amount / max(float(noise.std()), 1e-6)
    return inside + bloat + noise > 0


def _detected(truth: list[Instances], seed: int = 1, **kwargs) -> list[Instances]:
    rng = np.random.default_rng(seed)
    out = []
    for t in truth:
        masks = np.array([_wobble(m, rng, **kwargs) for m in t.masks])
        inst = Instances(t.boxes, np.full(len(t), 0.9), t.classes, masks, {0: "character"})
        inst.boxes = inst.boxes_from_masks()
        inst.track_ids = t.track_ids.copy()
        out.append(inst)
    return out


def _with_alphas(detected: list[Instances]) -> list[Instances]:
    """The detections with soft alphas, as the learned refiner gives them: each mask's edge blurred, its 0.5
    level the mask (>= 128 inside, <= 127 outside)."""
    for d in detected:
        soft = np.array([cv2.GaussianBlur(m.astype(np.float32) * 255, (0, 0), 1.5) for m in d.masks])
        d.alphas = np.where(d.masks, np.clip(soft, 128, 255), np.clip(soft, 0, 127)).round().astype(np.uint8)
    return detected


def _stabilised(frames: list[np.ndarray], detected: list[Instances], **settings) -> list[Instances]:
    stab = MaskStabilizer(**settings)
    return [stab.update(f, d) for f, d in zip(frames, detected, strict=True)]


# ------------------------------------------------------------------------------------------------ behaviour
def test_flicker_goes_down_and_masks_do_not_get_worse():
    walk = [[(20 + 4 * t, 30) for t in range(24)]]
    frames, truth = _scene(walk)
    detected = _detected(truth)
    before, after = temporal_scores(truth, detected), temporal_scores(truth, _stabilised(frames, detected))
    assert after["dtssd"] <= 0.7 * before["dtssd"], (before, after)
    assert after["iou"] >= before["iou"] - 0.01, (before, after)


def test_a_fast_jump_is_followed_not_lagged():
    path = [(20 + 3 * t, 35) for t in range(8)] + [(150 + 3 * t, 10) for t in range(6)]  # 130 px right, 25 up
    frames, truth = _scene([path], seed=3)
    detected = _detected(truth, seed=4)
    out = _stabilised(frames, detected)
    jump = 8
    got, want = out[jump].masks[0], truth[jump].masks[0]
    assert mask_iou(got, want) >= mask_iou(detected[jump].masks[0], want) - 0.01
    assert mask_iou(got, want) >= 0.85
    assert not (got & truth[jump - 1].masks[0] & ~want).any()  # nothing left behind where it was
    for t in range(jump, len(path)):
        assert mask_iou(out[t].masks[0], truth[t].masks[0]) >= mask_iou(detected[t].masks[0], truth[t].masks[0]) - 0.01


def test_fast_motion_is_followed_and_smoothed_without_a_trailing_ghost():
    run = [(10 + 30 * t, 30) for t in range(8)]  # 30 px per frame, most of the character's width
    frames, truth = _scene([run], seed=13)
    detected = _detected(truth, seed=14)
    out = _stabilised(frames, detected)
    ring = np.ones((7, 7), np.uint8)
    for t in range(1, len(run)):
        got, want, det = out[t].masks[0], truth[t].masks[0], detected[t].masks[0]
        trail = truth[t - 1].masks[0] & ~(cv2.dilate(want.astype(np.uint8), ring) > 0)  # where it was, not is
        assert (got & trail).sum() <= (det & trail).sum() + 0.001 * want.sum()
        assert mask_iou(got, want) >= mask_iou(det, want) - 0.01
    # smoothing needs the past moved onto the present: without motion it is thrown away (0.8x here)
    before, after = temporal_scores(truth, detected), temporal_scores(truth, out)
    assert after["dtssd"] <= 0.7 * before["dtssd"], (before, after)


def test_motion_is_found_far_beyond_the_optical_flow_window():
    jump = [(20, 30), (150, 38)]  # 130 px right, 8 down: optical flow started from no motion loses this
    frames, truth = _scene([jump], seed=15)
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    detected = _detected(truth, seed=16)  # the guess (centre shift of wobbling masks) is a few px off
    guess = centre_shift(detected[0].masks[0], detected[1].masks[0])
    motion = estimate_motion(gray[0], gray[1], detected[0].masks[0], guess)
    assert motion[:, 2] == pytest.approx([130, 8], abs=1.0)
    assert motion[:, :2] == pytest.approx(np.eye(2), abs=0.02)


def test_alphas_are_stabilised_with_the_mask():
    walk = [[(20 + 4 * t, 30) for t in range(16)]]
    frames, truth = _scene(walk, seed=17)
    for t in truth:
        t.alphas = t.masks.astype(np.uint8) * 255
    detected = _with_alphas(_detected(truth, seed=18))
    out = _stabilised(frames, detected)
    for o in out:
        assert o.alphas is not None and np.array_equal(o.alphas >= 128, o.masks)  # cut-outs keep what masks keep
    before, after = temporal_scores(truth, detected), temporal_scores(truth, out)
    assert after["alpha_dtssd"] <= 0.7 * before["alpha_dtssd"], (before, after)
    # a carried frame carries its alpha too
    lost = [d if t < 10 else d[np.zeros(0, int)] for t, d in enumerate(detected)]
    carried = _stabilised(frames, lost, carry=1)[10]
    assert carried.refine[0]["method"] == "carried" and np.array_equal(carried.alphas >= 128, carried.masks)


def test_crossing_characters_do_not_leak_into_each_other():
    a = [(40 + 6 * t, 30) for t in range(24)]  # walks right, behind
    b = [(200 - 6 * t, 35) for t in range(24)]  # walks left, in front
    frames, truth = _scene([a, b], seed=5)
    detected = _detected(truth, seed=6)
    out = _stabilised(frames, detected)
    for d, o in zip(detected, out, strict=True):
        for i in range(2):
            others = d.masks[1 - i]
            assert not (o.masks[i] & others & ~d.masks[i]).any()  # never takes what the other claims
    before, after = temporal_scores(truth, detected), temporal_scores(truth, out)
    assert after["dtssd"] < before["dtssd"] and after["iou"] >= before["iou"] - 0.01, (before, after)


def test_a_character_merged_into_the_one_in_front_is_given_back():
    a = [(40 + 6 * t, 30) for t in range(16)]  # walks right, behind
    b = [(200 - 6 * t, 35) for t in range(16)]  # walks left, in front
    frames, truth = _scene([a, b], seed=5)
    detected = _detected(truth, seed=6)
    for t in range(12, 15):  # the detector sees one character: the front one's mask swallows what shows of the other
        merged = detected[t][np.array([1])]
        merged.masks = (detected[t].masks[0] | detected[t].masks[1])[None]
        merged.boxes = merged.boxes_from_masks()
        detected[t] = merged
    out = _stabilised(frames, detected)
    for t in range(12, 15):  # the front one's mask is better than the merged one (most of all at first)
        front = out[t].masks[out[t].track_ids.tolist().index(1)]
        gain = mask_iou(front, truth[t].masks[1]) - mask_iou(detected[t].masks[0], truth[t].masks[1])
        assert gain >= (0.15 if t == 12 else 0.02), (t, gain)
    first = out[12]
    assert first.track_ids.tolist() == [1, 0] and first.refine[1]["method"] == "carried"
    assert mask_iou(first.masks[1], truth[12].masks[0]) >= 0.5  # the one behind, where it shows


def test_a_missed_frame_is_carried_then_let_go():
    walk = [[(20 + 4 * t, 30) for t in range(12)]]
    frames, truth = _scene(walk, seed=7)
    detected = _detected(truth, seed=8)
    for t in range(5, 12):  # the detector loses the character from frame 5 on
        detected[t] = detected[t][np.zeros(0, int)]
    out = _stabilised(frames, detected, carry=2)
    assert [len(o) for o in out] == [1] * 7 + [0] * 5
    carried = out[5]
    assert carried.track_ids.tolist() == [0] and carried.refine[0]["method"] == "carried"
    assert carried.scores[0] == pytest.approx(0.9) and mask_iou(carried.masks[0], truth[5].masks[0]) >= 0.85


def test_new_tracks_and_untracked_instances_keep_their_own_masks_snapped_only():
    walk = [[(30, 30)] * 3]
    frames, truth = _scene(walk, seed=9)
    det = _detected(truth, seed=10)[0]
    first = MaskStabilizer(snap=None).update(frames[0], det)
    assert np.array_equal(first.masks, det.masks)  # no past, no snapping: unchanged
    det.track_ids = np.array([-1])
    assert np.array_equal(MaskStabilizer().update(frames[0], det).masks, det.masks)  # no track: unchanged
    with pytest.raises(ValueError, match="weight"):
        MaskStabilizer(weight=0.0)


# ------------------------------------------------------------------------------------------------ wiring
class _FakeSegmenter:
    """Detections from a list, one frame per call; no model."""

    names = {0: "character"}

    def __init__(self, detections: list[Instances]):
        self.detections = list(detections)

    def detect(self, image: np.ndarray) -> Instances:
        inst = self.detections.pop(0)
        return Instances(inst.boxes, inst.scores, inst.classes, inst.masks, self.names)

    def refine(self, image: np.ndarray, instances: Instances) -> Instances:
        return instances


@pytest.mark.parametrize("stabilize", [True, False])
def test_tracking_segmenter_stabilises_by_default(stabilize):
    walk = [[(20 + 4 * t, 30) for t in range(6)]]
    frames, truth = _scene(walk, seed=11)
    detected = _detected(truth, seed=12)
    args = {} if stabilize else {"stabilize": False}
    tracking = TrackingSegmenter(_FakeSegmenter(detected), **args)
    assert tracking.stabilize is stabilize
    tracking.start("clip")
    out = [tracking(f) for f in frames]
    assert all(o.track_ids.tolist() == [1] for o in out[1:])
    same = [np.array_equal(o.masks, d.masks) for o, d in zip(out[1:], detected[1:], strict=True)]
    assert not any(same) if stabilize else all(same)


def test_cli_documents_the_option_and_says_when_it_changes_nothing(tmp_path, capsys):
    with pytest.raises(SystemExit):
        from animeseg.cli import main

        main(["predict", "--help"])
    assert "--no-stabilize" in capsys.readouterr().out
    model = tmp_path / "model.pt"
    model.write_bytes(b"not a model")  # loading fails after the option checks: exit 2, no image read
    frames = tmp_path / "frames"
    frames.mkdir()
    cv2.imwrite(str(frames / "0.png"), np.zeros((32, 32, 3), np.uint8))
    code, err = cli(capsys, "predict", frames, "--model", model, "--no-stabilize")
    assert code == 2 and "--no-stabilize is only used with --track" in err
