"""`vod2s3 client status` as plain text that fits the terminal's width (80 columns when
the output is not a terminal). The short fields (id, state, progress, time) keep one
column each and are never cut; the long ones (source path, destination, message) share the
last column, one line each: paths lose their middle, which keeps the volume and user at
the start and the file name at the end, and messages wrap at spaces (not inside
hyphenated names), since every word may matter."""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

ELLIPSIS = "..."  # ASCII: legible whatever encoding the customer's terminal uses
GAP = "  "
# Narrower than this and the last column stops shrinking: a 20-character path end still
# names the file, where a 5-character one names nothing.
MIN_DETAIL_WIDTH = 20
HEADERS = ("id", "state", "progress", "last updated", "upload")


@dataclass(frozen=True)
class StatusRow:
    """The fields of an upload record that the status table shows."""

    id: int
    state: str
    progress: int
    last_updated: str
    path: str
    destination: str
    message: str

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> StatusRow:
        """From a record as `aws.status` answers it (docs/api.md)."""
        return cls(
            id=int(record["id"]),
            state=str(record["state"]),
            progress=int(record.get("progress") or 0),
            last_updated=str(record.get("last_updated") or ""),
            path=str(record["path"]),
            destination=f"s3://{record['bucket']}/{record['destination_path']}",
            message=str(record.get("message") or ""),
        )


def elide_middle(text: str, width: int) -> str:
    """``text`` if it fits in ``width`` characters, else its start and end around "..."
    (the end gets the odd character: it holds the file name)."""
    if len(text) <= width:
        return text
    kept = width - len(ELLIPSIS)
    if kept <= 0:
        return text[-width:]
    head = kept // 2
    return text[:head] + ELLIPSIS + text[len(text) - (kept - head) :]


def terminal_width() -> int:
    """The terminal's columns, or $COLUMNS, or 80 when the output goes to a file or pipe."""
    return shutil.get_terminal_size().columns


def status_lines(rows: Sequence[StatusRow], width: int) -> list[str]:
    """The table, one string per line, each at most ``width`` characters when ``width``
    leaves the last column at least MIN_DETAIL_WIDTH."""
    cells = [(str(row.id), row.state, f"{row.progress}%", row.last_updated) for row in rows]
    widths = [
        max([len(header), *(len(cell[index]) for cell in cells)])
        for index, header in enumerate(HEADERS[:-1])
    ]
    fixed = sum(widths) + len(GAP) * len(widths)
    detail_width = max(MIN_DETAIL_WIDTH, width - fixed)

    def line(fields: Sequence[str], detail: str) -> str:
        aligned = [
            field.rjust(size) if index in (0, 2) else field.ljust(size)
            for index, (field, size) in enumerate(zip(fields, widths, strict=True))
        ]
        return (GAP.join(aligned) + GAP + detail).rstrip()

    indent = " " * fixed
    lines = [line(HEADERS[:-1], HEADERS[-1])]
    for row, fields in zip(rows, cells, strict=True):
        lines.append(line(fields, elide_middle(row.path, detail_width)))
        lines.append(indent + elide_middle("-> " + row.destination, detail_width))
        lines.extend(
            indent + part
            for part in textwrap.wrap(row.message, detail_width, break_on_hyphens=False)
        )
    return lines
