"""CLI command (curate). OWNED BY a helper."""

import typer


def register(app: typer.Typer) -> None:
    pass
