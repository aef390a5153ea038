"""Page sizes, the colour-blind-safe palette, matplotlib settings, and a text-page writer."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from matplotlib.figure import Figure

from feddp_eval.plugins import defense_card, defense_cards

PORTRAIT = (8.27, 11.69)  # A4, inches
LANDSCAPE = (11.69, 8.27)
OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442")
RC = {
    "pdf.fonttype": 42,  # TrueType: the text stays real text that pypdf and readers can extract
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "image.interpolation": "nearest",
}


def rc_params() -> dict[str, Any]:
    """matplotlib settings for every report page (use inside ``matplotlib.rc_context``)."""
    from cycler import cycler

    return {**RC, "axes.prop_cycle": cycler(color=list(OKABE_ITO))}


SPARE_MARKER = "v"


def defense_color(defense: str) -> str:
    """The colour the defense declares; the others get the Okabe–Ito colours no defense declares, by
    name (stable across reports)."""
    card = defense_card(defense)
    if card is not None and card.colour is not None:
        return card.colour
    taken = {c.colour for c in defense_cards()}
    spare = [c for c in OKABE_ITO if c not in taken]
    return spare[sum(map(ord, defense)) % len(spare)]


def defense_marker(defense: str) -> str:
    """The marker the defense declares, so series differ by shape as well as colour; else the spare."""
    card = defense_card(defense)
    return card.marker if card is not None and card.marker is not None else SPARE_MARKER


def new_page(size: tuple[float, float] = PORTRAIT) -> Figure:
    """A blank A4 figure, not attached to pyplot: no GUI backend, nothing leaks between reports."""
    return Figure(figsize=size)


def page_heading(fig: Figure, title: str, subtitle: str | None = None) -> None:
    """The section title at the top left of a page (real text: tests and readers search for it)."""
    fig.text(0.05, 0.975, title, fontsize=15, weight="bold", va="top", ha="left")
    if subtitle:
        fig.text(0.05, 0.945, subtitle, fontsize=9, va="top", ha="left", color="#333333")


@dataclass
class TextFlow:
    """Writes headings, paragraphs, bullets and monospace blocks top to bottom, page after page.

    Wrapping is by character count, sized for DejaVu Sans at A4 portrait width with 0.6 in margins.
    """

    title: str
    size: tuple[float, float] = PORTRAIT
    pages: list[Figure] = field(default_factory=list)
    _y: float = 0.0

    def __post_init__(self) -> None:
        self._new_page()

    def _new_page(self) -> None:
        fig = new_page(self.size)
        cont = " (continued)" if self.pages else ""
        fig.text(0.07, 0.965, self.title + cont, fontsize=15, weight="bold", va="top")
        self.pages.append(fig)
        self._y = 0.925

    def _line(self, text: str, *, size: float, x: float = 0.07, **kw: Any) -> None:
        step = size * 1.45 / 72 / self.size[1]
        if self._y - step < 0.05:
            self._new_page()
        self.pages[-1].text(x, self._y, text, fontsize=size, va="top", ha="left", **kw)
        self._y -= step

    def _width(self, size: float, *, mono: bool = False, indent: float = 0.0) -> int:
        usable = self.size[0] * (1 - 0.14 - indent) * 72  # points
        return max(20, int(usable / (size * (0.6 if mono else 0.55))))

    def space(self, points: float = 6) -> None:
        """Vertical gap."""
        self._y -= points / 72 / self.size[1]

    def heading(self, text: str, size: float = 12) -> None:
        """A bold heading, kept with at least a few lines below it."""
        if self._y < 0.15:
            self._new_page()
        self.space(4)
        self._line(text, size=size, weight="bold")
        self.space(2)

    def paragraph(self, text: str, size: float = 9.5, **kw: Any) -> None:
        """Wrapped text."""
        for line in textwrap.wrap(text, self._width(size), break_on_hyphens=False) or [""]:
            self._line(line, size=size, **kw)
        self.space(3)

    def bullets(self, items: Sequence[str], size: float = 9.5, **kw: Any) -> None:
        """A bulleted list; continuation lines indented."""
        for item in items:
            lines = textwrap.wrap(item, self._width(size, indent=0.03), break_on_hyphens=False) or [""]
            for i, line in enumerate(lines):
                self._line(("• " if i == 0 else "   ") + line, size=size, x=0.08, **kw)
        self.space(3)

    def mono(self, lines: Sequence[str], size: float = 8) -> None:
        """Monospace lines, hard-wrapped (commands, hashes)."""
        width = self._width(size, mono=True)
        for line in lines:
            for part in textwrap.wrap(line, width, break_long_words=True, break_on_hyphens=False) or [""]:
                self._line(part, size=size, family="DejaVu Sans Mono")
        self.space(3)
