"""Where per-input work runs: behind one small interface, so a batch loop does not care whether it is this
process or a cluster.

:class:`LocalEngine` runs each piece of work here, one after the other. Another engine (Ray workers, a process
pool) implements the same :class:`Engine` protocol: ``map`` yields one :class:`Outcome` per item in input order,
turning a failure of one item into that item's one-line error instead of ending the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from animeseg.errors import InputError

T = TypeVar("T")


@dataclass
class Outcome(Generic[T]):
    """What the work on one item gave: ``value`` when it succeeded, else ``error`` (one line); ``bad_input`` when
    the item itself is unusable (an :class:`InputError`: running it again cannot help)."""

    item: T
    value: Any = None
    error: str | None = None
    bad_input: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


def failure_message(e: BaseException) -> str:
    """The one-line reason an item failed: an :class:`InputError`'s problem, else the exception's type and the
    first line of its message (a decoder bug or out-of-memory in one item must not end a batch)."""
    if isinstance(e, InputError):
        return e.problem
    first = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {first}".rstrip(": ")


class Engine(Protocol):
    """Runs ``work`` on every item and yields :class:`Outcome` records in input order, as they complete.

    ``in_process`` says whether ``work`` runs in this process (so its progress callbacks reach the caller); an
    engine that runs it elsewhere (``False``) pickles ``work`` and its callers report progress from the outcomes.
    """

    in_process: bool

    def map(self, work: Callable[[T], Any], items: Iterable[T]) -> Iterator[Outcome[T]]: ...


class LocalEngine:
    """Runs the work in this process, one item after the other (what ``animeseg predict`` and ``eval`` use)."""

    in_process = True

    def map(self, work: Callable[[T], Any], items: Iterable[T]) -> Iterator[Outcome[T]]:
        for item in items:
            try:
                value = work(item)
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as e:
                yield Outcome(item, error=failure_message(e), bad_input=isinstance(e, InputError))
                continue
            yield Outcome(item, value)
