"""Pure helpers for the bench's report: min/max over repeats, ratios, the ceiling grid table.

Every figure is measured `--repeat` times; what is printed is its range, `min-max`, so that the
noise of these machines is visible next to the figure itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Span:
    """The range of one figure over its repeats."""

    low: float
    high: float

    @classmethod
    def of(cls, values: Iterable[float]) -> Span:
        items = [float(v) for v in values]
        if not items:
            return cls(0.0, 0.0)
        return cls(min(items), max(items))

    def text(self, digits: int = 1) -> str:
        low, high = f"{self.low:.{digits}f}", f"{self.high:.{digits}f}"
        return low if low == high else f"{low}-{high}"

    def over(self, base: float, digits: int = 2) -> str:
        """This range divided by `base` (a ceiling or a peer), as a range of ratios."""
        if base <= 0:
            return "-"
        return Span(self.low / base, self.high / base).text(digits)

    def as_dict(self) -> dict[str, float]:
        return {"min": round(self.low, 3), "max": round(self.high, 3)}


@dataclass(frozen=True)
class GridCell:
    """One raw configuration of the ceiling grid: `sessions` sessions of `threads` threads each."""

    batch: int
    sessions: int
    threads: int
    fps: tuple[float, ...]  # the best pass of each repeat

    @property
    def label(self) -> str:
        return f"{self.sessions}x{self.threads}"

    @property
    def best(self) -> float:
        return max(self.fps, default=0.0)

    def describe(self) -> str:
        session_word = "session" if self.sessions == 1 else "sessions"
        thread_word = "thread" if self.threads == 1 else "threads"
        return (
            f"batch {self.batch}, {self.sessions} {session_word} x {self.threads} {thread_word}"
            + (" in two threads" if self.sessions > 1 else "")
        )


def best_cell(cells: Sequence[GridCell]) -> GridCell:
    return max(cells, key=lambda cell: cell.best)


def grid_lines(cells: Sequence[GridCell]) -> list[str]:
    """Batch sizes down, configurations across; each cell is the FPS range over the repeats."""
    labels = list(dict.fromkeys(cell.label for cell in cells))
    batches = sorted({cell.batch for cell in cells})
    by_key = {(cell.batch, cell.label): cell for cell in cells}
    winner = best_cell(cells) if cells else None
    lines = ["    batch" + "".join(f"{label:>16}" for label in labels)]
    for batch in batches:
        row = f"    {batch:>5}"
        for label in labels:
            cell = by_key.get((batch, label))
            text = Span.of(cell.fps).text() if cell else "-"
            if cell is not None and cell is winner:
                text += " *"
            row += f"{text:>16}"
        lines.append(row)
    return lines


def stage_means_text(stages_ms: dict[str, float]) -> str:
    return " ".join(f"{stage} {ms:.1f}" for stage, ms in stages_ms.items())
