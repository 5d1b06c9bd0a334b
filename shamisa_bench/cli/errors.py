"""The one error type the command line turns into a message instead of a traceback."""

from __future__ import annotations

__all__ = ["CLIError"]


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2, no traceback."""
