"""What a benchmark returns: tables of raw numbers, and the targets they are checked against."""

from __future__ import annotations

import gc
import operator
import statistics
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    '<': operator.lt, '<=': operator.le, '>=': operator.ge, '>': operator.gt,
}


@dataclass(frozen=True)
class Check:
    """One target: ``value`` compared with ``limit`` by ``op`` (``'<'``, ``'<='``, ``'>='`` or ``'>'``)."""

    name: str
    value: float
    op: str
    limit: float
    unit: str = 'x'

    @property
    def met(self) -> bool:
        return _OPERATORS[self.op](self.value, self.limit)

    def describe(self) -> str:
        return f'{self.value:.2f}{self.unit} (target {self.op} {self.limit:g}{self.unit})'


@dataclass
class Section:
    """One benchmark's results: a markdown table, notes, and its checks."""

    title: str
    headers: Sequence[str]
    benchmark: str = ''
    """The name ``--only`` selects it by; set by the runner."""
    rows: list[Sequence[Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)

    def add(self, *cells: Any) -> None:
        self.rows.append(cells)

    def markdown(self) -> str:
        lines = [f'### {self.title}', '', '| ' + ' | '.join(self.headers) + ' |',
                 '|' + '---|' * len(self.headers)]
        lines += ['| ' + ' | '.join(_cell(cell) for cell in row) + ' |' for row in self.rows]
        if self.notes:
            lines.append('')
            lines += [f'- {note}' for note in self.notes]
        if self.checks:
            lines.append('')
            lines += [f'- target {"MET" if c.met else "MISSED"}: {c.name}: {c.describe()}' for c in self.checks]
        return '\n'.join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f'{value:,.2f}' if abs(value) < 100 else f'{value:,.0f}'
    return str(value)


def median(values: Sequence[float]) -> float:
    """The median; ``nan`` for no values (a cell that could not be measured)."""
    return statistics.median(values) if values else float('nan')


def paired_ratio(subject: Sequence[float], baseline: Sequence[float]) -> float:
    """The median of per-round ratios ``subject[i] / baseline[i]``.

    Each round measured both sides back to back, so a ratio within a round is
    what the noise of a shared machine disturbs least.
    """
    return median([s / b for s, b in zip(subject, baseline, strict=True) if b])


def ms(seconds: float) -> str:
    """Seconds as a short milliseconds cell."""
    return f'{seconds * 1000:.2f} ms' if seconds < 10 else f'{seconds * 1000:,.0f} ms'


def mib(size: float) -> str:
    return f'{size / 2**20:.1f} MiB'


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Keep the objects that exist now out of the garbage collector's way while timing.

    PERF: a ``gc.collect()`` before each timed run, over SQLAlchemy's and the
    benchmark's long-lived objects, costs about 0.1 s; frozen, they are skipped.
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
