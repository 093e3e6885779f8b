"""`predict --track`: characters linked across frames, per-track cut-outs, sequences, resume and bad inputs.

The end-to-end checks run the shared YOLOv8n-seg COCO ONNX model on clips made here from real Ren'Py sprites
walking across a real background and crossing each other (``bench/clips.py``), whose identities are known in
every frame; the plumbing is checked with constructed detections and a fake segmenter.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import run_cli as cli
from PIL import Image

from animeseg.cli import main
from animeseg.instances import Instances
from animeseg.io import read_rgba
from animeseg.masks import decode_rle
from animeseg.overlay import PALETTE, render_overlay
from animeseg.track import Tracker, TrackingSegmenter, lone_images, sequence_of
from animeseg.writers import image_annotations, track_cutout_path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.clips import CROSSING, identities, make_clip, switches  # noqa: E402


def _boxes(*xyxy: tuple[float, float, float, float], scores=None, size=(120, 200)) -> Instances:
    n = len(xyxy)
    return Instances(xyxy, scores if scores is not None else [0.9] * n, [0] * n, np.zeros((n, *size), bool))


# ------------------------------------------------------------------------------------------------ tracker
@pytest.mark.parametrize("name", ["bytetrack", "botsort"])
def test_tracker_keeps_ids_through_a_crossing_and_a_missed_frame(name):
    tracker = Tracker(name, conf=0.25)
    frame = np.zeros((120, 200, 3), np.uint8)
    ids = []
    for t in range(12):
        a = 20 + 10 * t  # walks right
        b = 150 - 10 * t  # walks left; they overlap around t = 6
        dets = [(a, 20, a + 30, 110), (b, 25, b + 30, 112)]
        if t == 7:
            dets = dets[:1]  # b hidden behind a for a frame
        got = tracker.update(_boxes(*dets), frame)
        ids.append(list(got))
    assert ids[0] == [1, 2]
    assert all(row == [1, 2] for t, row in enumerate(ids) if t != 7)
    assert ids[7] == [1]
    assert tracker.update(Instances.empty(120, 200), frame).shape == (0,)  # a frame with nobody in it
    # a detection weaker than --conf starts no track (-1) but may extend one (see TrackingSegmenter)
    weak = Tracker("bytetrack", conf=0.5)
    assert list(weak.update(_boxes((10, 10, 40, 100), (100, 10, 130, 100), scores=[0.9, 0.3]), frame)) == [1, -1]


@pytest.mark.parametrize(
    ("tracker", "message"),
    [("nonsense", "choose bytetrack or botsort"), ("{tmp}/missing.yaml", "tracker file not found")],
)
def test_bad_tracker_settings_are_one_line_before_any_work(tracker, message, tmp_path, capsys, network_attempts):
    model = tmp_path / "model.pt"
    model.write_bytes(b"never loaded")  # the check comes first
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(2):
        Image.new("RGB", (32, 32)).save(frames / f"{i}.png")
    code, err = cli(
        capsys, "predict", frames, "--model", model, "--track", "--tracker", tracker.replace("{tmp}", str(tmp_path))
    )
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert network_attempts() == []


def test_track_on_single_images_says_it_needs_frames(tmp_path, capsys, network_attempts):
    model = tmp_path / "model.pt"
    model.write_bytes(b"never loaded")
    one, two = tmp_path / "one", tmp_path / "two"
    for folder in (one, two):
        folder.mkdir()
        Image.new("RGB", (32, 32)).save(folder / "a.png")
    out = tmp_path / "out"
    code, err = cli(capsys, "predict", one / "a.png", "--model", model, "--out", out, "--track")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "--track needs frames" in err and "a.png is a single image" in err
    code, err = cli(capsys, "predict", one, two, "--model", model, "--out", out, "--track")
    assert code == 2 and "are single images" in err, err
    assert not out.exists() and network_attempts() == []


# ------------------------------------------------------------------------------------------------ end to end
def _sequence(doc: dict, prefix: str) -> list[tuple[dict, list[dict]]]:
    images = [im for im in doc["images"] if im["file_name"].startswith(prefix)]
    return [(im, [a for a in doc["annotations"] if a["image_id"] == im["id"]]) for im in images]


def _identity_stats(clip, frames: list[tuple[dict, list[dict]]]) -> dict[int, dict[str, int]]:
    per_frame = []
    for (im, anns), truth in zip(frames, clip.truth, strict=True):
        masks = np.array([decode_rle(a["segmentation"]) for a in anns], bool).reshape(-1, im["height"], im["width"])
        pred = Instances(np.zeros((len(anns), 4)), [a["score"] for a in anns], [0] * len(anns), masks)
        per_frame.append(identities(truth, pred, [a["track_id"] for a in anns]))
    return switches(per_frame)


def test_track_follows_each_character_through_a_crossing(renpy, shared_onnx, tmp_path, capsys):
    clip = make_clip(renpy, CROSSING, frames=16)
    src = tmp_path / "in"
    (src / "frames").mkdir(parents=True)
    writer = cv2.VideoWriter(str(src / "walk.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 8, (320, 240))
    for i, frame in enumerate(clip.frames):
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        Image.fromarray(frame).save(src / "frames" / f"{i:04d}.png")
    writer.release()
    (src / "frames" / "notes.png").write_text("not a frame\n")  # a bad input inside a sequence
    (src / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
    (src / "stills").mkdir()
    Image.fromarray(clip.frames[0]).save(src / "stills" / "poster.png")  # alone in its folder

    out = tmp_path / "out"
    model = ["--model", shared_onnx, "--imgsz", "320", "--classes", "0"]
    code, err = cli(capsys, "predict", src, *model, "--out", out, "--save", "json,cutouts,video", "--track")
    assert code == 1, err  # two bad inputs, one line each; everything else went on
    lines = err.strip().splitlines()
    assert len([x for x in lines if "notes.png" in x]) == 1 and len([x for x in lines if "broken.mp4" in x]) == 1
    assert len([x for x in lines if "poster.png" in x and "needs frames" in x]) == 1
    doc = json.loads((out / "predictions.json").read_text())
    status = {im["file_name"]: im["status"] for im in doc["images"]}
    assert status["broken.mp4"] == status["frames/notes.png"] == "error"
    assert all(a["track_id"] >= 1 for a in doc["annotations"])

    for prefix, folder, label in (("walk.avi#", "walk#", "{i:06d}"), ("frames/0", "frames/", "{i:04d}")):
        frames = _sequence(doc, prefix)
        assert len(frames) == 16 and all(im["status"] == "ok" for im, _ in frames)
        stats = _identity_stats(clip, frames)
        # both characters found in (nearly) every frame, each under one track id: at most one switch per crossing
        assert set(stats) == {0, 1}, stats
        assert all(s["frames"] >= 13 and s["switches"] <= clip.crossings for s in stats.values()), stats
        # one folder per track holding that character's frames, alpha = its mask
        tracks: dict[int, set[str]] = {}
        for i, (_, anns) in enumerate(frames):
            for a in anns:
                tracks.setdefault(a["track_id"], set()).add(label.format(i=i))
        for track_id, names in tracks.items():
            folder_path = out / Path(track_cutout_path(folder, track_id, "x")).parent
            assert {p.stem for p in folder_path.iterdir()} == names
        im, anns = frames[5]
        a = anns[0]
        x, y, w, h = (int(v) for v in a["bbox"])
        cut = read_rgba(out / track_cutout_path(folder, a["track_id"], label.format(i=5)))
        assert np.array_equal(cut[..., 3] > 0, decode_rle(a["segmentation"])[y : y + h, x : x + w])
    # no per-instance files beside the tracks'; whole-frame cut-outs stay per frame
    assert not list(out.glob("cutouts/walk#0000*_*.png")) and len(list(out.glob("cutouts/walk#0000*.png"))) == 16
    cap = cv2.VideoCapture(str(out / "videos" / "walk.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 16
    cap.release()
    poster_id = next(im["id"] for im in doc["images"] if im["file_name"] == "stills/poster.png")
    poster = [a for a in doc["annotations"] if a["image_id"] == poster_id]
    assert poster
    assert sorted(a["track_id"] for a in poster) == list(range(1, len(poster) + 1))


def test_refined_masks_keep_their_detections_track(renpy, shared_onnx):
    from animeseg.predict import Segmenter
    from animeseg.refine import build_refiner

    clip = make_clip(renpy, CROSSING, frames=16)
    plain = TrackingSegmenter(Segmenter(shared_onnx, imgsz=320, classes=[0]))
    refined = TrackingSegmenter(Segmenter(shared_onnx, imgsz=320, classes=[0], refine=build_refiner("grabcut")))
    plain.start("walk#")
    refined.start("walk#")
    changed, tracks = 0, set()
    for frame in clip.frames[:5]:
        a, b = plain(frame), refined(frame)
        assert len(a) == len(b) >= 1
        assert np.array_equal(a.track_ids, b.track_ids) and np.array_equal(a.scores, b.scores)  # same detections
        tracks |= set(b.track_ids.tolist())
        changed += sum(r["refined"] for r in b.refine)
        assert plain.conf == 0.25 and plain.segmenter.settings.conf == 0.25  # a frame's lower conf is per call
    assert tracks == {1, 2}
    assert changed >= 2  # GrabCut really replaced masks, and they kept their tracks


# ------------------------------------------------------------------------------------------------ plumbing
class _FakeTracking:
    """A disc per image whose track id is the number of frames seen in its sequence (records start() calls)."""

    names = {0: "character"}

    def __init__(self) -> None:
        self.started: list[str] = []
        self.seen: dict[str, int] = {}
        self.current = ""

    def start(self, sequence: str, restart: bool = False) -> None:
        self.started.append(sequence)
        if restart:
            self.seen[sequence] = 0
        self.current = sequence

    def __call__(self, image):
        self.seen[self.current] = self.seen.get(self.current, 0) + 1
        h, w = image.shape[:2]
        m = np.zeros((1, h, w), bool)
        m[0, h // 4 : h // 2, w // 4 : w // 2] = True
        inst = Instances(np.zeros((1, 4)), [0.8], [0], m, dict(self.names), track_ids=[self.seen[self.current]])
        inst.boxes = inst.boxes_from_masks()
        return inst


def test_a_sequence_is_resumed_as_a_whole(tmp_path):
    from animeseg.media import expand_sources
    from animeseg.runner import run
    from animeseg.runs import record_path

    src = tmp_path / "in"
    for folder, n in (("a", 3), ("b", 2)):
        (src / folder).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (40, 32), (i * 40, 90, 20)).save(src / folder / f"f{i}.png")
    items = expand_sources([src])
    assert [sequence_of(it) for it in items] == ["a/"] * 3 + ["b/"] * 2 and lone_images(items) == []
    out = tmp_path / "out"
    fake = _FakeTracking()
    first = run(items, fake, out, ["json", "cutouts"])
    assert first.succeeded == 5
    assert (out / "cutouts" / "a" / "track_003" / "f2.png").is_file()
    assert (out / "cutouts" / "b" / "track_002" / "f1.png").is_file()
    doc = json.loads((out / "predictions.json").read_text())
    assert [a["track_id"] for a in doc["annotations"]] == [1, 2, 3, 1, 2]

    record_path(out, "a/f1").unlink()  # as if the run had been killed there
    fake = _FakeTracking()
    seen = []
    again = run(items, fake, out, ["json", "cutouts"], resume=True, on_item=seen.append)
    assert [r.status for r in seen] == ["ok", "ok", "ok", "skipped", "skipped"]  # all of a/ again, b/ kept
    assert (again.succeeded, again.skipped) == (3, 2)
    assert json.loads((out / "predictions.json").read_text()) == doc


def test_overlays_and_annotations_follow_the_track():
    h, w = 100, 120
    masks = np.zeros((2, h, w), bool)
    masks[0, 10:60, 5:45] = True
    masks[1, 30:90, 60:110] = True
    inst = Instances(np.zeros((2, 4)), [0.9, 0.8], [0, 0], masks, {0: "person"}, track_ids=[7, 3])
    inst.boxes = inst.boxes_from_masks()
    assert list(inst[[1]].track_ids) == [3] and inst[[1]].track_ids.dtype == np.int64
    assert [a["track_id"] for a in image_annotations(inst)] == [7, 3]
    assert "track_id" not in image_annotations(Instances(inst.boxes, inst.scores, inst.classes, masks))[0]
    with pytest.raises(ValueError, match="track_ids has 1 ids for 2 instances"):
        Instances(inst.boxes, inst.scores, inst.classes, masks, track_ids=[1])

    image = np.full((h, w, 3), 128, np.uint8)
    swapped = inst[[1, 0]]  # another frame: same characters, listed the other way round
    for shown in (inst, swapped):
        out = render_overlay(image, shown).astype(int)
        for (y, x), track in (((50, 25), 7), ((75, 85), 3)):
            centre = out[y, x]  # inside that character's mask, away from its outline and label
            expected = np.round(128 * 0.55 + PALETTE[track % len(PALETTE)] * 0.45)
            assert np.abs(centre - expected).max() <= 1


def test_help_documents_the_options(capsys):
    with pytest.raises(SystemExit) as e:
        main(["predict", "--help"])
    text = capsys.readouterr().out
    assert e.value.code == 0
    for option in ("--track", "--tracker", "--alpha", "bytetrack", "matte"):
        assert option in text


def test_options_that_would_change_nothing_say_so(tmp_path, capsys):
    model = tmp_path / "model.pt"
    model.write_bytes(b"not a model")  # loading fails after the option checks: exit 2, no image read
    frames = tmp_path / "frames"
    frames.mkdir()
    Image.new("RGB", (32, 32)).save(frames / "0.png")
    args = ["--tracker", "botsort", "--alpha", "matte", "--save", "json,overlays"]
    code, err = cli(capsys, "predict", frames, "--model", model, *args)
    assert code == 2 and "model.pt: not a PyTorch checkpoint" in err
    assert "--tracker is only used with --track" in err and "--alpha matte only changes cut-outs" in err
