"""The progress bar of `vod2s3 client upload --wait`. Rich's own bar draws the done part and
the empty track with the same character, told apart by colour only, and at 16 colours its
finished green and its track's grey both become bright black: a finished bar looked empty.
Here the two parts differ in shape ("█" against "░"), so they stay apart at any colour
depth, or with none, and their colours are among the 16 every terminal has."""

from __future__ import annotations

from rich.progress import (
    DownloadColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TransferSpeedColumn,
)
from rich.text import Text

DONE = "█"
TRACK = "░"
# 24 cells leave room, within 80 columns, for "upload 123456 completed", the byte counts and
# the speed.
BAR_WIDTH = 24
RUNNING_STYLE = "magenta"
FINISHED_STYLE = "green"
TRACK_STYLE = "bright_black"


class BlockBar(ProgressColumn):
    """The bar: DONE cells for the share uploaded, TRACK cells for the rest (all of it while
    the size is not known yet)."""

    def render(self, task: Task) -> Text:
        share = 0.0 if not task.total else min(task.completed / task.total, 1.0)
        done = round(BAR_WIDTH * share)
        return Text.assemble(
            (DONE * done, FINISHED_STYLE if task.finished else RUNNING_STYLE),
            (TRACK * (BAR_WIDTH - done), TRACK_STYLE),
        )


def upload_progress() -> Progress:
    """The display: description, bar, bytes uploaded of the total, and speed."""
    return Progress(
        TextColumn("{task.description}"),
        BlockBar(),
        DownloadColumn(),
        TransferSpeedColumn(),
        transient=False,
    )
