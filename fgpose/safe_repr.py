"""Short, crash-free ``repr`` of untrusted values, for error and warning messages.

Values read from files (pickles, OBJ lines, command lines) can be anything: a list nested
200,000 deep (plain ``repr`` raises ``RecursionError``), an integer of 10**5 digits (plain
``repr`` raises ``ValueError`` past Python's int-to-str digit limit), a megabyte string.
:func:`short_repr` shows the beginning of any of them, never raises, and never returns
more than about ``limit`` characters. No fgpose imports: any module may use it.
"""

from __future__ import annotations

import reprlib
from typing import Any

__all__ = ["short_repr"]

_MAX_INT_BITS = 256  # larger integers are described by their size, not spelled out


class _ShortRepr(reprlib.Repr):
    """:class:`reprlib.Repr` with small limits and huge integers described by size."""

    def __init__(self, limit: int):
        super().__init__()
        self.maxlevel = 3
        self.maxstring = self.maxother = self.maxlong = max(12, limit)
        for name in ("maxtuple", "maxlist", "maxarray", "maxdict", "maxset", "maxfrozenset", "maxdeque"):
            setattr(self, name, 4)

    def repr_int(self, x: int, level: int) -> str:  # noqa: D102 - see class docstring
        bits = x.bit_length()
        if bits > _MAX_INT_BITS:
            return f"<{'-' if x < 0 else ''}int of about {int(bits * 0.30103) + 1} digits>"
        return super().repr_int(x, level)


def short_repr(value: Any, limit: int = 80) -> str:
    """A ``repr`` of ``value`` cut to about ``limit`` characters; never raises.

    Containers are shown 3 levels and 4 items deep (``[[[[...]]]]``), strings and other
    objects cut in the middle with ``...``, integers of more than 256 bits as
    ``<int of about N digits>``. An object whose ``__repr__`` fails is shown as
    ``<TypeName>``.
    """
    try:
        text = _ShortRepr(limit).repr(value)
    except Exception:  # noqa: BLE001 - a broken __repr__, RecursionError, MemoryError, ...
        return f"<{type(value).__name__}>"
    if len(text) > limit + 3:
        half = max(4, (limit - 3) // 2)
        text = text[:half] + "..." + text[-half:]
    return text
