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
    """Runs the work in this process (what ``animeseg predict`` and ``eval`` use): one item after the other, or
    ``workers`` items side by side on threads (for work that is thread-safe, such as a native detector's
    inference), still yielding the outcomes in input order."""

    in_process = True

    def __init__(self, workers: int = 1) -> None:
        self.workers = max(1, int(workers))

    def map(self, work: Callable[[T], Any], items: Iterable[T]) -> Iterator[Outcome[T]]:
        if self.workers == 1:
            for item in items:
                yield _outcome(work, item)
            return
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(self.workers, thread_name_prefix="animeseg-work") as pool:
            pending: deque = deque()
            for item in items:
                pending.append(pool.submit(_outcome, work, item))
                if len(pending) > self.workers:  # a bounded window: memory stays at a few items
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()


def _outcome(work: Callable[[T], Any], item: T) -> Outcome[T]:
    try:
        return Outcome(item, work(item))
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as e:
        return Outcome(item, error=failure_message(e), bad_input=isinstance(e, InputError))
