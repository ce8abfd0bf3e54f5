"""Value checks for the library's configuration objects (and any namespace of settings).

Each check reads named attributes of one object and raises a one-line DiffsecError naming the
first bad one, so a bad setting is refused when its config is built, before a stage opens its
artifact. Booleans are not numbers here, and NaN or infinity is never a valid setting.
"""

from __future__ import annotations

import math
from typing import Any

from diffsec.errors import DiffsecError


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _fail(name: str, v: Any, what: str) -> None:
    raise DiffsecError(f"{name} must be {what}, got {v!r}")


def positive(obj: Any, *names: str) -> None:
    """Each attribute is a finite number > 0 (an int where the value is an int)."""
    for n in names:
        v = getattr(obj, n)
        if not (_number(v) and v > 0):
            _fail(n, v, "positive")


def non_negative(obj: Any, *names: str) -> None:
    for n in names:
        v = getattr(obj, n)
        if not (_number(v) and v >= 0):
            _fail(n, v, ">= 0")


def fraction(obj: Any, *names: str) -> None:
    """Each attribute lies in [0, 1] (a decay, a rate)."""
    for n in names:
        v = getattr(obj, n)
        if not (_number(v) and 0 <= v <= 1):
            _fail(n, v, "in [0, 1]")


def positive_ints(obj: Any, *names: str) -> None:
    """Each attribute is a non-empty list of positive integers (widths per level)."""
    for n in names:
        v = getattr(obj, n)
        if not (isinstance(v, (list, tuple)) and v and all(_number(c) and int(c) == c and c > 0 for c in v)):
            _fail(n, v, "a non-empty list of positive integers")


def flags(obj: Any, name: str, like: str) -> None:
    """Attribute `name` is a list of booleans as long as the list `like`."""
    v, n = getattr(obj, name), len(getattr(obj, like))
    if not (isinstance(v, (list, tuple)) and len(v) == n and all(isinstance(b, bool) for b in v)):
        _fail(name, v, f"a list of {n} booleans (one per entry of {like})")


def one_of(obj: Any, name: str, choices: tuple) -> None:
    v = getattr(obj, name)
    if v not in choices:
        _fail(name, v, f"one of {', '.join(map(str, choices))}")
