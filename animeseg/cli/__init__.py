"""The ``animeseg`` command line: a thin layer that parses options and calls the library.

Each command lives in its own module and imports heavy libraries (torch, ultralytics) only inside the command,
so ``animeseg --help`` stays instant.
"""

from __future__ import annotations

import sys

import typer

try:  # Typer from 0.2x carries its own copy of Click
    from typer._click.exceptions import BadParameter, NoArgsIsHelpError, UsageError
except ImportError:  # older Typer runs on Click itself
    from click.exceptions import BadParameter, NoArgsIsHelpError, UsageError  # type: ignore[no-redef]

from animeseg import __version__
from animeseg.cli import cut, data, evaluate, export, predict, serve, train, weights
from animeseg.cli.console import error
from animeseg.cli.help import tidy_help
from animeseg.cli.render import setup_logging
from animeseg.errors import AnimesegError, missing_extra

tidy_help()

app = typer.Typer(
    name="animeseg",
    help="Anime-character instance segmentation: build datasets, train YOLOv8-seg, predict (masks redrawn by the "
    "packaged learned refiner, or by GrabCut or SAM), cut out, serve a local page, evaluate and export to ONNX. Works "
    "offline; nothing is downloaded unless you run `animeseg weights download`.",
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
app.command("cut")(cut.cut)
app.add_typer(weights.app, name="weights")
app.add_typer(export.app, name="export")
app.command("serve")(serve.serve)


def usage_line(e: UsageError) -> str:
    """A usage error as one line naming the option (or argument) and the problem, then where help is."""
    message = (e.message if isinstance(e, BadParameter) else "") or e.format_message()
    if isinstance(e, BadParameter) and e.message:  # (a missing parameter's own message names it)
        param, name = getattr(e, "param", None), getattr(e, "param_hint", None)
        if not isinstance(name, str) and param is not None:
            name = param.opts[0] if param.opts and param.param_type_name == "option" else str(param.name).upper()
        if isinstance(name, str) and not message.startswith(name):  # ours start with the option and value
            message = f"{name}: {message}"
    message = " ".join(message.split())
    where = e.ctx.command_path if e.ctx is not None else "animeseg"
    return f"{message} (see {where} -h)"


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``animeseg`` script: user errors and usage errors become one line and an exit code
    (2 for misuse), not a traceback or a panel."""
    try:
        code = app(args=argv, prog_name="animeseg", standalone_mode=False)
    except NoArgsIsHelpError as e:  # `animeseg weights`: the group's help, as a bare `animeseg` gives
        e.show()
        sys.exit(e.exit_code)
    except UsageError as e:
        error(usage_line(e))
        sys.exit(e.exit_code)
    except AnimesegError as e:
        error(str(e))
        sys.exit(e.exit_code)
    except ModuleNotFoundError as e:  # an optional package this command reached for: which extra installs it
        hint = missing_extra(e)
        if hint is None:
            raise
        error(str(hint))
        sys.exit(hint.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        error("interrupted; finished outputs are kept, run again (with --resume where offered) to continue")
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
