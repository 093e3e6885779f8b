"""The ``animeseg`` command line: a thin layer that parses options and calls the library.

Each command lives in its own module and imports heavy libraries (torch, ultralytics) only inside the command,
so ``animeseg --help`` stays instant.
"""

from __future__ import annotations

import sys

import typer

from animeseg import __version__
from animeseg.cli import data, evaluate, export, predict, serve, train, weights
from animeseg.cli.console import error
from animeseg.cli.render import setup_logging
from animeseg.errors import AnimesegError, missing_extra

app = typer.Typer(
    name="animeseg",
    help="Anime-character instance segmentation: build datasets, train YOLOv8-seg, predict with SAM "
    "refinement, evaluate and export to ONNX. Works offline; nothing is downloaded unless you run "
    "`animeseg weights download`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"animeseg {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", "-V", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Anime-character instance segmentation."""
    setup_logging()


app.add_typer(data.app, name="data")
app.command("train")(train.train)
app.command("eval")(evaluate.evaluate)
app.command("predict")(predict.predict)
app.add_typer(weights.app, name="weights")
app.add_typer(export.app, name="export")
app.command("serve")(serve.serve)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``animeseg`` script: user errors become one line and an exit code, not a traceback."""
    try:
        app(args=argv, prog_name="animeseg")
    except AnimesegError as e:
        error(str(e))
        sys.exit(e.exit_code)
    except ModuleNotFoundError as e:  # an optional package this command reached for: which extra installs it
        hint = missing_extra(e)
        if hint is None:
            raise
        error(str(hint))
        sys.exit(hint.exit_code)
    except KeyboardInterrupt:
        error("interrupted; finished outputs are kept, run again (with --resume where offered) to continue")
        sys.exit(130)
