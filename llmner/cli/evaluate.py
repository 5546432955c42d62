"""CLI commands (evaluate). OWNED BY a helper; registered by llmner.cli.main."""

import typer


def register(app: typer.Typer) -> None:
    pass
