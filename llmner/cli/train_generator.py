"""CLI command (train_generator). OWNED BY a helper."""

import typer


def register(app: typer.Typer) -> None:
    pass
