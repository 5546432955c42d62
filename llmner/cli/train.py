"""``llmner train generator|selector|reader`` and ``llmner curate``."""

import typer


def register(app: typer.Typer) -> None:
    from llmner.cli import curate, train_generator, train_reader, train_selector

    train_app = typer.Typer(help="Train the generator (LoRA), the selector or the reader.", no_args_is_help=True)
    train_generator.register(train_app)
    train_selector.register(train_app)
    train_reader.register(train_app)
    app.add_typer(train_app, name="train")
    curate.register(app)
