"""Streaming CLI commands (run, submit, results). OWNED BY the workers helper."""

import typer


def register(app: typer.Typer) -> None:
    pass
