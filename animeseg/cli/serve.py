"""`animeseg serve`: a local web page to segment anime art by drag and drop."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import typer

from animeseg.cli import options

LOOPBACK_HINT = "only this computer can open it; --host 0.0.0.0 opens it to your network"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    model: options.Model = None,
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to listen on; 0.0.0.0 lets other computers on your network in."
    ),
    port: int = typer.Option(7860, "--port", min=1, max=65535, help="Port to listen on."),
    imgsz: options.imgsz_option(
        "Image size the page starts with (each request may change it)." + options.default_note("imgsz")
    ) = None,
    conf: options.conf_option(
        "Confidence the page starts with (each request may change it)." + options.default_note("conf")
    ) = None,
    refine: options.Refine = None,
    sam_checkpoint: options.ServeSamCheckpoint = None,
    sam_type: options.SamType = "auto",
    device: options.Device = None,
) -> None:
    """Serve a local web page: drop images or a video, get every character cut out.

    The page shows the overlay and every cut-out, and gives it all as one zip. Works with no network; uploads
    stay on this computer. Ctrl+C stops it.
    """
    import os
    import shutil
    import signal
    import sys
    import tempfile
    import time

    from rich.markup import escape

    from animeseg.cli.console import console, warn
    from animeseg.device import resolve_device
    from animeseg.errors import AnimesegError
    from animeseg.refine import RefineOptions, check_refiner
    from animeseg.web import page_env
    from animeseg.weights import default_sam

    try:
        import gradio  # noqa: F401  (checked before the model loads)
    except ImportError:
        raise AnimesegError(
            "animeseg serve needs Gradio: pip install -e '.[web]' (or pip install 'animeseg[web]')"
        ) from None

    # everything that can be wrong with the set-up fails here, in one line, before the model loads
    model_file = options.model_file(model)
    torch_device = resolve_device(device)
    # SAM is offered on the page when there is a checkpoint (given, or an official one in weights/)
    if sam_checkpoint is not None or default_sam() is not None or refine == "sam":
        refine_with = options.refine_options("sam", sam_checkpoint, sam_type, torch_device)
    else:
        refine_with = RefineOptions(device=torch_device)
    if refine not in (None, "none"):  # the page's starting refinement must be one it offers
        check_refiner(refine, refine_with)
    sam_path = refine_with.sam_checkpoint
    settings = options.detect_settings(model_file, imgsz=imgsz, conf=conf)

    workspace = Path(tempfile.mkdtemp(prefix="animeseg-serve-"))
    # SIGTERM (a service manager, a test) must clean up like Ctrl+C does
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        os.environ.update(page_env(workspace))
        from animeseg.web.holder import ModelHolder
        from animeseg.web.page import build_page, launch

        with console.status(escape(f"loading {model_file.name}")):
            holder = ModelHolder(
                model_file, refine=refine_with, device=torch_device, settings=settings, refine_default=refine
            )
            holder.warm_up()
        if holder.refine_note is not None:
            warn(holder.refine_note)
        jobs = workspace / "jobs"
        jobs.mkdir()
        page = build_page(holder, jobs)
        try:
            url = launch(page, host=host, port=port, allowed=[jobs])
        except OSError:  # Gradio's own message names its environment variables, not our options
            message = f"cannot listen on {host} port {port}: in use or not allowed; pass another --port"
            raise AnimesegError(message) from None
        console.print(f"animeseg serve: {url}", soft_wrap=True, markup=False)
        if _is_loopback(host):
            console.print(f"listening on {host} port {port}: {LOOPBACK_HINT}", soft_wrap=True, markup=False)
        else:
            warn(f"listening on {host} port {port}: anyone who can reach this computer can open the page and upload")
        sam_note = f", SAM: {sam_path.name}" if sam_path is not None else ", SAM: none (pass --sam-checkpoint)"
        console.print(f"model: {model_file}{sam_note}; press Ctrl+C to stop", soft_wrap=True, markup=False)
        try:
            while page.is_running:
                time.sleep(0.5)
        except KeyboardInterrupt:
            console.print("stopping")
        finally:
            page.close()
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
