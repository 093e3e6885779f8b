"""Typer's help output, tidied where it misleads (applied once, when ``animeseg.cli`` is imported).

Typer 0.2x prints a type after every option in its help panels, plain flags included (``--resume <bool>``, even
``--help -h <bool>``), a type after an argument that has its own metavar (``SOURCE... <list[str]>``) and a
required argument in braces (``{sources}...``). Here a flag shows no type, an argument with a metavar shows that
metavar alone, and the usage line reads ``SOURCE...`` / ``[NAME]``, as Click itself writes them. On a Typer
without these methods (older releases, which print none of that) nothing is changed.
"""

from __future__ import annotations

from typing import Any

_DONE = False


def tidy_help() -> None:
    """Patch Typer's parameter classes once (see the module doc)."""
    global _DONE
    if _DONE:
        return
    _DONE = True
    try:
        from typer.core import TyperArgument, TyperOption
    except ImportError:  # pragma: no cover - Typer's layout changed: keep its own help
        return

    option_type = getattr(TyperOption, "display_type_rich", None)
    if option_type is not None:

        def display_option_type(self: Any, ctx: Any) -> str | None:
            if getattr(self, "is_flag", False) or getattr(self, "count", False):
                return None  # a flag takes no value: nothing to show
            return option_type(self, ctx)

        TyperOption.display_type_rich = display_option_type  # type: ignore[method-assign]

    argument_type = getattr(TyperArgument, "display_type_rich", None)
    if argument_type is not None:

        def display_argument_type(self: Any, ctx: Any) -> str | None:
            return None if self.metavar is not None else argument_type(self, ctx)

        TyperArgument.display_type_rich = display_argument_type  # type: ignore[method-assign]

    if hasattr(TyperArgument, "_usage_display_name"):

        def usage_name(self: Any) -> str:
            name = self.metavar or str(self.name).upper() + ("..." if self.nargs != 1 else "")
            return name if self.required else f"[{name}]"

        TyperArgument._usage_display_name = usage_name  # type: ignore[attr-defined]
