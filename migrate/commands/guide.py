"""`pypissh-migrate guide NAME`: the personal twine guide of one account, for admins to send."""

from __future__ import annotations

import click

from gateway.cliutil import Context, pass_context
from gateway.lifecycle.guide import FORMATS, build_guide, render_guide
from gateway.registry import AdminInputError


@click.command("guide")
@click.argument("name")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True,
              help="text for terminals, markdown for mail or tickets, json for scripts.")
@pass_context
def guide(obj: Context, name: str, fmt: str) -> None:
    """Print account NAME's step-by-step guide from SSH uploads to twine.

    The user sees the same steps with `ssh submit@HOST guide`.
    """
    try:
        text = render_guide(build_guide(obj.registry(), obj.settings(), name), fmt)
    except AdminInputError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(text, nl=False)
