"""Jet Admin's named colors for select options: stable per value, distinct within one enum."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ['PALETTE', 'ColorsByValue', 'cached_color', 'distinct_colors', 'stable_color']

#: Jet Admin's named colors. A value always gets the same one.
PALETTE = ('blue', 'green', 'orange', 'purple', 'red', 'teal', 'yellow', 'pink', 'indigo', 'gray')


def stable_color(value: Any) -> str:
    """A color that depends only on ``value``: the same in every process and every run."""
    try:
        return _cached_color(value)
    except TypeError:  # unhashable: computed each time
        return _color(value)


def _color(value: Any) -> str:
    digest = hashlib.blake2b(str(value).encode('utf-8', 'surrogatepass'), digest_size=4).digest()
    return PALETTE[int.from_bytes(digest, 'big') % len(PALETTE)]


# PERF: a page of 50 options hashed 50 values on every request, 15% of an options call;
# the same keys come back page after page. typed: 1 and True (equal, and hashed alike) differ as text.
_cached_color = functools.lru_cache(maxsize=65_536, typed=True)(_color)

#: :func:`stable_color` of a hashable value, with no call around the cache; raises ``TypeError`` on
#: an unhashable one. PERF: for a loop over many keys (a page of options), which catches that once.
cached_color: Callable[[Any], str] = _cached_color

#: How many colors a :class:`ColorsByValue` remembers before it starts over.
REMEMBERED = 65_536


class ColorsByValue(dict[Any, str]):
    """``colors[value]`` is ``stable_color(value)``, remembered by value.

    PERF: a dict lookup, where the shared cache builds a ``(value, type)`` key per
    call: 40 % of the time a page of 50 options spends on its rows. Keyed by value
    alone, so only for values whose equals are written alike, such as the
    ``int``, ``str`` or ``UUID`` keys of one column. (``1``, ``True`` and ``1.0``
    are one key of a dict, yet their colors differ.)
    """

    __slots__ = ()

    def __missing__(self, value: Any) -> str:
        if len(self) >= REMEMBERED:
            self.clear()
        color = self[value] = stable_color(value)
        return color


def distinct_colors(keys: Sequence[Any]) -> list[str]:
    """One color per key, distinct among the keys as long as the palette allows.

    Each key starts from its :func:`stable_color` and moves on to the next free
    color of the palette on a clash, so a key keeps its color when others are
    appended after it. Past the palette's length the colors start over, so
    that each run of ``len(PALETTE)`` keys is distinct.
    """
    colors: list[str] = []
    taken: set[int] = set()
    for key in keys:
        if len(taken) == len(PALETTE):
            taken.clear()
        index = PALETTE.index(stable_color(key))
        while index in taken:
            index = (index + 1) % len(PALETTE)
        taken.add(index)
        colors.append(PALETTE[index])
    return colors
