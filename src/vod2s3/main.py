"""`vod2s3`, the command. The customer's `client` group is registered here; every other
command is the server's (vod2s3.cli), and that module, with SQLAlchemy, Alembic and boto3
behind it, is imported only when one of its commands runs or the full help is asked for:
`vod2s3 client status` starts in a fraction of the time (docs/benchmarks.md)."""

from __future__ import annotations

import click

from vod2s3 import installed_version
from vod2s3.client_cli import client


class _ServerCommandsOnDemand(click.Group):
    """A group whose own commands are the client's, and whose other commands are those of
    `vod2s3.cli.main`, looked up there when asked for (so a command added there needs no
    change here)."""

    @staticmethod
    def _server() -> click.Group:
        from vod2s3.cli import main as server

        return server

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._server().list_commands(ctx)})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        own = super().get_command(ctx, cmd_name)
        return own if own is not None else self._server().get_command(ctx, cmd_name)


@click.group(cls=_ServerCommandsOnDemand)
@click.version_option(installed_version(), prog_name="vod2s3")
def main() -> None:
    """vod2s3: copy video files from storage volumes into customers' S3 buckets."""


main.add_command(client)
