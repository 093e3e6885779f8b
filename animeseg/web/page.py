"""The Gradio page of ``animeseg serve``: upload, settings, overlay, cut-outs, masks, one zip.

Needs the optional extra ``animeseg[web]`` (Gradio). Import this module only after ``GRADIO_TEMP_DIR`` and
``GRADIO_ANALYTICS_ENABLED`` are set (Gradio reads them at import): :func:`animeseg.web.page_env` says how.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gradio as gr

from animeseg.matte import ALPHA_MODES
from animeseg.progress import Step
from animeseg.web.holder import ModelHolder, PageSettings
from animeseg.web.jobs import JobResult, Picture, prune_jobs, run_job

log = logging.getLogger(__name__)

#: Most pictures shown per gallery; the zip always holds everything.
GALLERY_LIMIT = 120
#: Largest upload Gradio accepts (it answers bigger ones with its own message on the page).
MAX_UPLOAD = "500mb"
#: Segmentation runs one request at a time: they share one model (and Ultralytics' predictor is not reentrant).
_MODEL_LOCK = "model"

_INTRO = (
    "# animeseg\n"
    "Drop anime art (one or many images, or a short video): every character is found and cut out separately. "
    "Everything runs on this computer; nothing you drop leaves it."
)


def _md(text: str) -> str:
    """``text`` with Markdown's special characters escaped (file names may hold ``_`` or ``*``)."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>])", r"\\\1", text)


def _gallery(pictures: Sequence[Picture]) -> list[tuple[str, str]]:
    return [(str(p.path), p.caption) for p in pictures[:GALLERY_LIMIT]]


def status_text(result: JobResult, settings: PageSettings) -> str:
    """The Markdown message under the button: what was found, with which settings, and what failed."""
    lines = []
    if result.succeeded:
        s = "" if result.images == 1 else "s"
        c = "" if result.instances == 1 else "s"
        lines.append(
            f"**{result.instances} character{c} in {result.images} image{s}** ({result.seconds:.1f} s; refinement "
            f"{settings.refine}, confidence {settings.conf:g}, size {settings.imgsz}, {settings.alpha} edges). The "
            f"zip holds every cut-out, mask, overlay and predictions.json."
        )
        shown = len(result.cutouts)
        if shown > GALLERY_LIMIT:
            lines.append(f"Showing the first {GALLERY_LIMIT} of {shown} cut-outs; all of them are in the zip.")
    if result.failures:
        n = len(result.failures)
        lines.append(f"**Could not use {n} file{'' if n == 1 else 's'}:**")
        lines += [f"- {_md(f)}" for f in result.failures]
    return "\n\n".join(lines) if lines else "Nothing to show."


def build_page(holder: ModelHolder, jobs: Path) -> gr.Blocks:
    """The page; ``jobs`` is the folder each batch's outputs go to. The settings first shown are the holder's
    (the model's defaults with ``serve``'s options over them), so an untouched page segments as ``predict`` does."""

    def segment(
        files: list[str] | None,
        refine: str,
        conf: float,
        imgsz: float,
        alpha: str,
        progress: Any = gr.Progress(),
    ) -> tuple[Any, ...]:
        no_zip = gr.DownloadButton(value=None, visible=False)
        if not files:
            return [], [], [], "Drop one or more images (or a short video) first.", no_zip
        settings = PageSettings(refine=refine, conf=float(conf), imgsz=int(imgsz), alpha=alpha)

        def report(step: Step) -> None:
            progress((step.done, step.total), desc=step.label, unit="images")

        try:
            prune_jobs(jobs)
            result = run_job(files, holder.segmenter(settings), jobs, on_progress=report, alpha=settings.alpha)
        except Exception as e:  # the server must keep serving whatever one request does
            log.exception("segmentation failed")
            message = f"**Something went wrong:** {_md(f'{type(e).__name__}: {e}')}. The page still works: try again."
            return [], [], [], message, no_zip
        if result.zip is None:
            download = no_zip
        else:
            label = f"Download all ({result.zip.stat().st_size / 1e6:.1f} MB zip)"
            download = gr.DownloadButton(label=label, value=str(result.zip), visible=True)
        return (
            _gallery(result.overlays),
            _gallery(result.cutouts),
            _gallery(result.masks),
            status_text(result, settings),
            download,
        )

    start = holder.page_defaults()
    # delete_cache: Gradio's copies of uploads and results older than an hour go, checked every hour
    with gr.Blocks(title="animeseg", analytics_enabled=False, delete_cache=(3600, 3600)) as page:
        gr.Markdown(_INTRO)
        if holder.refine_note is not None:  # the model's own refiner cannot start: said, not silently replaced
            gr.Markdown(_md(holder.refine_note), elem_id="refine-note")
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                files = gr.File(
                    label="Images or a short video", file_count="multiple", type="filepath", elem_id="inputs"
                )
                refine = gr.Radio(
                    holder.refine_methods,
                    value=start.refine,
                    label="Refinement",
                    info="learned: a small network redraws each mask; GrabCut needs no weights; SAM appears when the "
                    "server has a checkpoint.",
                    elem_id="refine",
                )
                conf_in = gr.Slider(0.01, 1.0, value=start.conf, step=0.01, label="Confidence", elem_id="conf")
                imgsz_in = gr.Slider(64, 1920, value=start.imgsz, step=32, label="Image size", elem_id="imgsz")
                alpha_in = gr.Radio(
                    list(ALPHA_MODES),
                    value=start.alpha,
                    label="Cut-out edges",
                    info="matte: soft edges by image matting, colours cleaned of the old background (slower).",
                    elem_id="alpha",
                )
                run_btn = gr.Button("Segment", variant="primary", elem_id="segment")
                status = gr.Markdown("", elem_id="status")
                download = gr.DownloadButton("Download all (zip)", visible=False, elem_id="download")
            with gr.Column(scale=2):
                overlays = gr.Gallery(label="Overlay", columns=2, height=520, object_fit="contain", elem_id="overlays")
                cutouts = gr.Gallery(
                    label="Characters (cut-outs)", columns=5, height=300, object_fit="contain", elem_id="cutouts"
                )
                masks = gr.Gallery(label="Masks", columns=5, height=300, object_fit="contain", elem_id="masks")
        outputs = [overlays, cutouts, masks, status, download]
        inputs = [files, refine, conf_in, imgsz_in, alpha_in]
        for event in (files.upload, run_btn.click):
            event(segment, inputs, outputs, concurrency_limit=1, concurrency_id=_MODEL_LOCK)
        files.clear(lambda: ([], [], [], "", gr.DownloadButton(value=None, visible=False)), None, outputs)
    return page


def launch(page: gr.Blocks, *, host: str, port: int, allowed: Sequence[Path]) -> str:
    """Start serving ``page`` in the background (no share link, no analytics) and return its local URL."""
    page.queue(default_concurrency_limit=1)
    _app, url, _share = page.launch(
        server_name=host,
        server_port=port,
        share=False,
        prevent_thread_lock=True,
        quiet=True,
        ssr_mode=False,
        allowed_paths=[str(p) for p in allowed],
        max_file_size=MAX_UPLOAD,
    )
    return url
