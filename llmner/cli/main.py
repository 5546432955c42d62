"""The ``llmner`` command. Sub-commands register themselves; streaming commands (``run``,
``submit``, ``results``) come from the ``workers`` package through the ``llmner.cli`` entry point
group, so that the library never imports the Celery adapter."""

from __future__ import annotations

import sys
from importlib.metadata import entry_points

import typer
from rich.console import Console

from llmner.errors import LlmnerError

app = typer.Typer(name="llmner", help="Biomedical NER with an LLM tagger and an entity selector.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
err_console = Console(stderr=True)


def _register_commands() -> None:
    from llmner.cli import (
        bundle,
        calibrate,
        data,
        evaluate,
        normalize,
        tag,
        train,
        view,
    )

    for module in (data, evaluate, tag, train, bundle, calibrate, normalize, view):
        module.register(app)
    for ep in entry_points(group="llmner.cli"):
        ep.load()(app)


_register_commands()


def main() -> None:
    try:
        app(standalone_mode=True)
    except LlmnerError as exc:
        # soft_wrap: an error stays on one line whatever the terminal width (logs, pipes).
        err_console.print(f"[bold red]error:[/] {exc}", soft_wrap=True, markup=True, highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
