"""Errors that reach users as one line."""

from __future__ import annotations

from pathlib import Path


class AnimesegError(Exception):
    """A problem the user can act on; the CLI prints its message as one line, without a traceback."""

    exit_code = 2


class ConfigError(AnimesegError):
    """A bad configuration file: names the file, the key and what is wrong."""

    def __init__(self, file: str | Path, key: str, problem: str):
        self.file, self.key, self.problem = str(file), key, problem
        where = f"{self.file}: {key}" if key else self.file
        super().__init__(f"{where}: {problem}")


class InputError(AnimesegError):
    """A bad input file (missing, empty, corrupt, unsupported...): names the file and the problem."""

    exit_code = 1

    def __init__(self, path: str | Path, problem: str):
        self.path, self.problem = str(path), problem
        super().__init__(f"{self.path}: {problem}")


class MissingWeightsError(AnimesegError):
    """A model or checkpoint file that is not on disk; says how to get it, never downloads."""

    def __init__(self, path: str | Path, hint: str = ""):
        self.path = str(path)
        msg = f"{self.path}: model file not found"
        super().__init__(f"{msg}; {hint}" if hint else msg)
