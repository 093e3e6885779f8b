"""The local web page of ``animeseg serve``: drop images or a short video, get overlays, cut-outs and a zip.

``holder`` holds the model (loaded once per server), ``jobs`` turns one batch of uploads into the same outputs as
``animeseg predict`` plus a zip, and ``page`` is the Gradio page around them. Only ``page`` imports Gradio (the
optional extra ``animeseg[web]``), so the rest works and is tested without it.
"""

from __future__ import annotations

from pathlib import Path


def page_env(workspace: str | Path) -> dict[str, str]:
    """Environment variables Gradio must see before it is imported: its upload cache inside ``workspace`` (so
    uploads go where the server cleans up), no analytics, no version check, no Hugging Face Hub calls."""
    return {
        "GRADIO_TEMP_DIR": str(Path(workspace) / "uploads"),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_HUB_OFFLINE": "1",
    }
