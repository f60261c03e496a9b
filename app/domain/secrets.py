"""Secret references: `${ secret.NAME }` in an http task's request.

The decider never sees a secret's value. A reference compiles to itself: the rendered
request (stored in history, shown by the API) keeps the text `${ secret.NAME }`, and the
worker substitutes the value from its own environment right before the call. So that a
run's input cannot smuggle a reference in, the compiler also records *where* the
definition itself wrote references (`secret_paths`), and the worker substitutes there only.

A reference is either a whole value (`"${ secret.TOKEN }"`) or sits inside an otherwise
literal string (`"Bearer ${ secret.TOKEN }"`); inside a larger expression it is an error,
because a JMESPath function could otherwise reshape it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

SECRET_NAME = r"[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)*"  # noqa: S105 -- a pattern, not a password
"""Letters, digits and single underscores: `__` would read as a TREADLE_<SECTION>__<KEY>."""

SECRET_REF = re.compile(r"\$\{\s*secret\.(?P<name>" + SECRET_NAME + r")\s*\}")
_SECRET_START = re.compile(r"\$\{\s*secret\b")

PathPart = str | int


def has_secret_reference(text: str) -> bool:
    """Whether `text` mentions `${ secret...` at all (well formed or not)."""
    return _SECRET_START.search(text) is not None


def malformed_reference(text: str) -> str | None:
    """A message if some `${ secret...` in `text` is not a well-formed reference."""
    starts = len(_SECRET_START.findall(text))
    if starts != len(SECRET_REF.findall(text)):
        return (
            "a secret reference must read ${ secret.NAME } with NAME made of letters, "
            "digits and single underscores"
        )
    return None


def secret_names(text: str) -> list[str]:
    """The secret names referenced in `text`, in order, without repeats."""
    return list(dict.fromkeys(m.group("name") for m in SECRET_REF.finditer(text)))


def secret_paths(value: Any) -> list[list[PathPart]]:
    """Where in a literal structure a string holds a secret reference: key/index paths."""
    return [list(path) for path in _walk(value, ())]


def _walk(value: Any, path: tuple[PathPart, ...]) -> Iterator[tuple[PathPart, ...]]:
    if isinstance(value, str):
        if SECRET_REF.search(value):
            yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, (*path, str(key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk(item, (*path, index))
