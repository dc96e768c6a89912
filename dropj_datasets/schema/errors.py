"""The one error of bad data (`DataError`), and bounded descriptions of untrusted values for its messages."""

from __future__ import annotations

import numpy as np
from typing import Optional


MAX_MESSAGE = 4000  # characters of one error message, whatever the data


class DataError(ValueError):
    """Source data that breaks the schema; the message names where and what.

    Messages are bounded (`MAX_MESSAGE`): values from the data go in through
    `describe`, never through a plain repr of an untrusted structure.
    """

    def __init__(self, message: str = "", *, file: Optional[str] = None, episode: Optional[int] = None,
                 step: Optional[int] = None, field: Optional[str] = None, expected: object = None,
                 got: object = None):
        if file is not None or field is not None:
            message = format_location(file, episode, step, field) + (
                f": expected {expected}, got {got}" if expected is not None else f": {message}")
        if len(message) > MAX_MESSAGE:
            message = message[:MAX_MESSAGE] + f" ... ({len(message) - MAX_MESSAGE:,} more characters)"
        super().__init__(message)


def describe(value: object, limit: int = 80) -> str:
    """A short, bounded description of an untrusted value: no recursion, at most about `limit` characters.

    >>> describe('Left'), describe([1, 2]), describe(np.zeros((2, 3)))
    ("'Left'", 'list of 2', 'ndarray float64[2, 3]')
    """
    if isinstance(value, np.ndarray):
        return f"ndarray {value.dtype}{list(value.shape)}"
    if isinstance(value, (str, bytes, bytearray)):
        text = repr(value[:limit])
        return text + (f" ... ({len(value):,} long)" if len(value) > limit else "")
    if value is None or type(value) in (bool, float) or isinstance(value, np.generic):
        return repr(value)[:limit]
    if type(value) is int:
        return repr(value) if value.bit_length() < 200 else f"an int of {value.bit_length()} bits"
    if isinstance(value, (list, tuple, dict, set, frozenset)):
        return f"{type(value).__name__} of {len(value)}"
    return type(value).__name__


def format_location(file: Optional[str], episode: Optional[int] = None, step: Optional[int] = None,
                    field: Optional[str] = None) -> str:
    parts = [file or "<source>"]
    if episode is not None:
        parts.append(f"episode {episode}")
    if step is not None:
        parts.append(f"step {step}")
    if field is not None:
        parts.append(f"field '{field}'")
    return ", ".join(parts)


def one_line(exc: BaseException, limit: int = 300, *, typed: bool = True) -> str:
    """An unexpected error said in one bounded line: `Type: the first line of its message` (without the type
    when `typed` is false), at most `limit` characters of the message."""
    text = str(exc).splitlines()[0][:limit] if str(exc) else ""
    if not typed:
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def counted(count: int, noun: str, plural: Optional[str] = None) -> str:
    """'1 episode', '3 episodes', '0 queries' (`plural` when adding an s is wrong): what every message says of a
    count."""
    return f"{count:,} {noun if count == 1 else plural or noun + 's'}"
