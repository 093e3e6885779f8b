"""The test suite's network guard, for this process (``tests/conftest.py``) and for a child process a test starts
(``python -c``, with this folder on ``sys.path``): every DNS lookup or connection attempt raises
:class:`NetworkBlocked` and is recorded; local (``AF_UNIX``) sockets still work. Importing it changes nothing."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any


class NetworkBlocked(OSError):
    pass


def block_network(setattr_: Callable[[Any, str, Any], None], record: Callable[[str], None]) -> None:
    """Replace the socket calls that reach the network, with ``setattr_(owner, name, value)`` (pytest's
    ``monkeypatch.setattr``, or :func:`setattr` in a child process); each attempt is passed to ``record``."""

    def blocked(what: str) -> Callable[..., Any]:
        def _raise(*args: Any, **kwargs: Any) -> Any:
            record(f"{what}{args[:2]!r}")
            raise NetworkBlocked(f"network access attempted in a test: {what}{args[:2]!r}")

        return _raise

    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> Any:  # local (AF_UNIX) sockets are not network
        if self.family == socket.AF_UNIX:
            return real_connect(self, address)
        return blocked("connect")(address)

    setattr_(socket, "getaddrinfo", blocked("getaddrinfo"))
    setattr_(socket, "gethostbyname", blocked("gethostbyname"))
    setattr_(socket, "create_connection", blocked("create_connection"))
    setattr_(socket.socket, "connect", connect)


def block_this_process(log: str) -> None:
    """For a child process: block the network for good, appending each attempt as a line to the file ``log``."""

    def record(attempt: str) -> None:
        with open(log, "a", encoding="utf-8") as f:
            f.write(attempt + "\n")

    block_network(setattr, record)
