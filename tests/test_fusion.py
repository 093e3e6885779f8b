"""Fusion on constructed candidates: what is taken, what is rejected and why, overlaps, boxes, instance count."""

from __future__ import annotations

import numpy as np
import pytest

from animeseg.fusion import DEFAULTS, fuse, settle_overlaps
from animeseg.instances import Instances
from animeseg.masks import mask_to_box
from animeseg.refine.base import Candidates

H, W = 120, 160


def disk(cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:H, :W]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


def blocky(mask: np.ndarray, cell: int = 8) -> np.ndarray:
    """What YOLO's coarse prototypes make of a shape: the mask on an 8-px grid."""
    small = mask.reshape(H // cell, cell, W // cell, cell).mean((1, 3)) > 0.5
    return np.repeat(np.repeat(small, cell, 0), cell, 1)


def instances(*masks: np.ndarray, scores=None) -> Instances:
    m = np.array(masks, bool)
    boxes = np.array([mask_to_box(x) for x in m], np.float32)
    scores = np.linspace(0.9, 0.5, len(m)) if scores is None else scores
    return Instances(boxes, scores, np.zeros(len(m)), m, {0: "character"})


def test_good_candidate_is_taken_and_box_recomputed():
    truth = disk(60, 60, 30)
    yolo = blocky(truth)
    part = truth & (np.mgrid[:H, :W][0] < 50)  # SAM's "part" output: the top only
    noise = disk(140, 20, 10)
    inst = instances(yolo)
    inst.boxes[0] = [25, 25, 97, 97]  # a loose detector box: fusion must recompute it
    out = fuse(inst, Candidates(np.array([[part, truth, noise]]), np.array([[0.95, 0.8, 0.9]])), "test")
    rec = out.refine[0]
    assert rec["refined"] is True and rec["candidate"] == 1 and rec["reason"] == "accepted"
    assert rec["method"] == "test" and rec["candidate_score"] == pytest.approx(0.8)
    assert rec["agreement"] == pytest.approx(np.logical_and(truth, yolo).sum() / np.logical_or(truth, yolo).sum(), 1e-3)
    np.testing.assert_array_equal(out.masks[0], truth)
    assert out.boxes[0].tolist() == mask_to_box(truth) == [30.0, 30.0, 91.0, 91.0]
    # the input is not modified
    np.testing.assert_array_equal(inst.masks[0], yolo)
    assert inst.refine[0] == {}


def test_leaking_candidate_is_rejected():
    truth = disk(60, 60, 25)
    yolo = blocky(truth)
    # the character plus the background beside it: still overlapping YOLO's mask well, but 1.55x its area
    leak = yolo | truth | (disk(60, 60, 36) & (np.mgrid[:H, :W][1] > 60))
    growth = leak.sum() / yolo.sum()
    assert growth > DEFAULTS["max_growth"] and (leak & yolo).sum() / (leak | yolo).sum() >= DEFAULTS["min_agreement"]
    out = fuse(instances(yolo), Candidates(leak[None, None], np.array([[0.99]])), "test")
    assert out.refine[0]["refined"] is False and "leaks" in out.refine[0]["reason"]
    np.testing.assert_array_equal(out.masks[0], yolo)


def test_spilling_outside_the_box_is_rejected():
    yolo = np.zeros((H, W), bool)
    yolo[40:80, 40:80] = True
    spill = yolo.copy()
    spill[40:80, 80:95] = True  # 37 % of the candidate lies right of the box (box grown by 15 % = 6 px)
    out = fuse(instances(yolo), Candidates(spill[None, None], np.array([[0.9]])), "test", max_growth=2.0)
    assert out.refine[0]["refined"] is False and "outside" in out.refine[0]["reason"]
    ok = fuse(instances(yolo), Candidates(spill[None, None], np.array([[0.9]])), "test", max_growth=2, max_outside=0.5)
    assert ok.refine[0]["refined"] is True


def test_partial_candidate_is_rejected():
    truth = disk(60, 60, 30)
    yolo = blocky(truth)
    part = truth & (np.mgrid[:H, :W][0] < 72)  # most of it, but the bottom third is gone
    cov = (part & yolo).sum() / yolo.sum()
    assert cov < DEFAULTS["min_coverage"] and (part & yolo).sum() / (part | yolo).sum() >= DEFAULTS["min_agreement"]
    out = fuse(instances(yolo), Candidates(part[None, None], np.array([[0.99]])), "test")
    assert out.refine[0]["refined"] is False and "partial" in out.refine[0]["reason"]
    np.testing.assert_array_equal(out.masks[0], yolo)


def test_low_agreement_low_score_and_empty_candidates_keep_yolo():
    yolo = blocky(disk(50, 60, 25))
    elsewhere = disk(120, 60, 25)
    empty = np.zeros((H, W), bool)
    out = fuse(instances(yolo), Candidates(np.array([[elsewhere, empty]]), np.array([[0.99, 0.99]])), "t")
    assert not out.refine[0]["refined"] and "agreement" in out.refine[0]["reason"]
    out = fuse(instances(yolo), Candidates(empty[None, None], np.array([[0.99]])), "t")
    assert not out.refine[0]["refined"] and "empty" in out.refine[0]["reason"]
    good = disk(50, 60, 25)
    out = fuse(instances(yolo), Candidates(good[None, None], np.array([[0.2]])), "t", min_score=0.5)
    assert not out.refine[0]["refined"] and "score" in out.refine[0]["reason"]
    for m in out.masks:
        np.testing.assert_array_equal(m, yolo)


def test_overlaps_settled_no_instance_dropped_or_added():
    left_t, right_t = disk(55, 60, 30), disk(105, 60, 30)
    left_y, right_y = blocky(left_t) & ~right_t, blocky(right_t)
    third_y = blocky(disk(140, 20, 12))  # a third instance whose candidate is rejected
    inst = instances(left_y, right_y, third_y, scores=np.array([0.6, 0.9, 0.4]))
    cands = Candidates(np.array([[left_t], [right_t], [disk(20, 100, 15)]]), np.array([[0.9], [0.9], [0.9]]))
    out = fuse(inst, cands, "test")
    assert len(out) == 3 and out.scores.tolist() == pytest.approx([0.6, 0.9, 0.4])
    assert [r["refined"] for r in out.refine] == [True, True, False]
    assert out.masks.sum(0).max() == 1  # no pixel belongs to two instances
    both = left_t & right_t
    # contested pixels inside only the right one's YOLO mask go to it; the rest to the higher score (also right)
    assert out.masks[1][both].all() and not out.masks[0][both].any()
    assert out.refine[0]["contested"] == both.sum() and out.refine[1]["contested"] == 0
    np.testing.assert_array_equal(out.masks[0], left_t & ~right_t)
    for i in range(3):
        assert out.boxes[i].tolist() == mask_to_box(out.masks[i])


def test_yolo_membership_beats_score_when_settling():
    a, b = disk(50, 60, 30), disk(90, 60, 30)
    yolo_a, yolo_b = a, b & ~a  # the detector gave the overlap to a
    masks, lost = settle_overlaps(np.array([a, b]), np.array([yolo_a, yolo_b]), np.array([0.3, 0.9]))
    assert masks[0][a & b].all() and not masks[1][a & b].any()
    assert lost.tolist() == [0, int((a & b).sum())]


def test_duplicate_detection_is_not_split_and_never_emptied():
    whole = disk(60, 60, 30)
    inside = whole & (np.mgrid[:H, :W][0] < 60)  # a duplicate box on the top half of the same character
    masks, lost = settle_overlaps(np.array([whole, inside]), np.array([whole, inside]), np.array([0.8, 0.5]))
    np.testing.assert_array_equal(masks[0], whole)  # the more confident one keeps all of it
    assert masks[1].sum() == inside.sum() and lost.tolist() == [0, 0]  # the other would be emptied: kept as is


def test_bad_shapes_and_unknown_thresholds_raise():
    inst = instances(disk(60, 60, 20))
    with pytest.raises(ValueError, match="candidates"):
        fuse(inst, Candidates(np.zeros((2, 1, H, W), bool), np.zeros((2, 1))), "t")
    with pytest.raises(ValueError, match="scores"):
        fuse(inst, Candidates(np.zeros((1, 2, H, W), bool), np.zeros((1, 3))), "t")
    with pytest.raises(TypeError, match="min_agrement"):
        fuse(inst, Candidates(np.zeros((1, 1, H, W), bool), np.zeros((1, 1))), "t", min_agrement=0.1)


def test_no_instances():
    empty = Instances.empty(H, W, {0: "character"})
    out = fuse(empty, Candidates(np.zeros((0, 3, H, W), bool), np.zeros((0, 3))), "t")
    assert len(out) == 0 and out.masks.shape == (0, H, W)


def test_contained_duplicates_are_suppressed_others_kept():
    from animeseg.suppress import suppress_contained

    h, w = 50, 60
    masks = np.zeros((4, h, w), bool)
    masks[0, 5:45, 5:30] = True  # a whole character
    masks[1, 5:20, 5:30] = True  # its upper half, found again with a lower score
    masks[2, 10:40, 25:55] = True  # a neighbour overlapping it a little
    masks[3, 35:50, 20:28] = True  # two thirds inside the whole: not a duplicate
    inst = Instances(np.zeros((4, 4)), [0.9, 0.7, 0.6, 0.5], [0, 0, 0, 0], masks)
    out = suppress_contained(inst, 0.8)
    assert out.scores.tolist() == pytest.approx([0.9, 0.6, 0.5])
    assert suppress_contained(inst, 1.0) is inst and len(suppress_contained(inst[[1, 2]], 0.8)) == 2


def test_a_character_split_in_two_is_merged_neighbours_are_not():
    from animeseg.suppress import merge_parts

    h, w = 60, 100
    masks = np.zeros((4, h, w), bool)
    masks[0, 5:55, 5:30] = True  # head, arms and jacket of a character
    masks[1, 25:58, 12:32] = True  # its torso and legs, found apart (box mostly inside, masks bleed)
    masks[2, 10:58, 31:56] = True  # a neighbour touching it, box outside
    masks[3, 20:30, 60:64] = True  # a small thing in front of the neighbour: far smaller, stays apart
    boxes = np.array([[5, 5, 30, 55], [12, 25, 32, 58], [31, 10, 56, 58], [60, 20, 64, 30]], np.float32)
    inst = Instances(boxes, [0.8, 0.7, 0.9, 0.6], [0, 0, 0, 0], masks)
    out = merge_parts(inst, 0.6)
    assert out.scores.tolist() == pytest.approx([0.8, 0.9, 0.6])
    assert np.array_equal(out.masks[0], masks[0] | masks[1])
    assert out.boxes[0].tolist() == [5, 5, 32, 58]
    assert merge_parts(inst, 1.0) is inst
    other_class = Instances(boxes, [0.8, 0.7, 0.9, 0.6], [0, 1, 0, 0], masks)
    assert len(merge_parts(other_class, 0.6)) == 4


def test_the_packaged_model_merges_split_parts_by_default():
    from animeseg.settings import GENERIC, model_defaults
    from animeseg.weights import packaged_model

    assert GENERIC.detect.merge >= 1  # other models keep every detection apart
    assert model_defaults(packaged_model()).detect.merge == pytest.approx(0.6)
