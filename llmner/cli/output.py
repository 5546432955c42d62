"""Where command output goes: stdout carries data only (reports, JSON, tagged documents), so that
it can be piped; everything said to the user (progress logs, summaries, notes) goes to stderr."""

from __future__ import annotations

import typer


def say(message: str) -> None:
    """A message to the user (stderr)."""
    typer.echo(message, err=True)
