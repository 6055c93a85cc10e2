"""Deviation notes: how a number's setup differs from its paper's. A CSV cell holds a row's notes joined in full
(self-contained, for machines); a markdown file gives each distinct note a key, defined once under its tables, and
its cells carry the keys (for people: a note shared by every row is written once, not once per row)."""

from __future__ import annotations

from collections.abc import Iterable

SEPARATOR = "; "  # no note contains it


def join_notes(*notes: str) -> str:
    return SEPARATOR.join(note for note in notes if note)


def split_notes(joined: str) -> list[str]:
    return [note for note in joined.split(SEPARATOR) if note] if isinstance(joined, str) else []


class KeyedNotes:
    """The notes of one markdown file: `[d1]`, `[d2]`, … in order of first appearance, with the rows each applies to."""

    def __init__(self) -> None:
        self._keys: dict[str, str] = {}  # note -> key
        self._rows: dict[str, list[str]] = {}  # key -> rows, in order
        self._all_rows: list[str] = []

    def keys(self, row: str, *deviations: str) -> str:
        """The keys of the notes in `deviations` (joined notes, one string per cell of the row), as `[d1] [d3]`."""
        if row not in self._all_rows:
            self._all_rows.append(row)
        keys = []
        for note in (note for joined in deviations for note in split_notes(joined)):
            key = self._keys.setdefault(note, f"d{len(self._keys) + 1}")
            rows = self._rows.setdefault(key, [])
            if row not in rows:
                rows.append(row)
            keys.append(key)
        return " ".join(f"[{key}]" for key in dict.fromkeys(keys))

    def column(self, rows: Iterable[str], deviations: Iterable[str]) -> list[str]:
        return [self.keys(row, joined) for row, joined in zip(rows, deviations)]

    def legend(self) -> list[str]:
        """Markdown lines defining each key once, with the rows it applies to ("every row" when it is all of them)."""
        if not self._keys:
            return ["None."]
        lines = []
        for note, key in self._keys.items():
            rows = self._rows[key]
            applies = "every row" if set(rows) == set(self._all_rows) else ", ".join(rows)
            lines.append(f"- **[{key}]** {note} ({applies})")
        return lines
