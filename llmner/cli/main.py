"""The ``llmner`` command. Sub-commands register themselves; streaming commands (``run``,
``submit``, ``results``) come from the ``workers`` package through the ``llmner.cli`` entry point
group, so that the library never imports the Celery adapter.

Output contract: stdout carries data only (so that it can be piped); progress, summaries, warnings
and errors go to stderr. Library noise (FutureWarnings, model-loading bars, third-party logs) is
hidden unless ``--verbose``.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from importlib.metadata import entry_points
from typing import Annotated

import click
import rich
import typer
import typer.main
from rich.console import Console

from llmner import __version__
from llmner.errors import LlmnerError

app = typer.Typer(name="llmner", help="Biomedical NER with an LLM tagger and an entity selector.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
err_console = Console(stderr=True)

# Third-party loggers that speak up while models load; their warnings are noise to a user.
_NOISY_LOGGERS = ("transformers", "torch", "peft", "accelerate", "onnxruntime", "onnxscript", "huggingface_hub")


def quiet_libraries(verbose: bool = False) -> None:
    """Send every rich progress bar (this package's and the workers') to stderr and, unless
    ``verbose``, hide library warnings, model-loading progress bars and third-party logs."""
    rich.reconfigure(stderr=True)
    if verbose:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        return
    for category in (FutureWarning, DeprecationWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category)
    if "transformers" in sys.modules:   # already imported (an in-process caller): set it directly
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    else:   # read when the commands import it (lazily, after this runs)
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    # onnxruntime's quantizer warns through the root logger ("consider pre-processing before quantization").
    logging.getLogger().addFilter(_from_llmner_or_severe)


def _from_llmner_or_severe(record: logging.LogRecord) -> bool:
    """Root-logger records: keep this package's and errors, drop third-party warnings."""
    return record.levelno >= logging.ERROR or f"{os.sep}site-packages{os.sep}" not in record.pathname


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"llmner {__version__}")
        raise typer.Exit()


@app.callback()
def global_options(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="show library warnings, logs and model-loading progress")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="print the version and exit")] = False,
) -> None:
    """Biomedical NER with an LLM tagger and an entity selector."""
    quiet_libraries(verbose)


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
        warm,
    )

    for module in (data, evaluate, tag, train, bundle, calibrate, normalize, view, warm):
        module.register(app)
    for ep in entry_points(group="llmner.cli"):
        ep.load()(app)


_register_commands()


def _flags_read_as_flags(command: click.Command) -> None:
    """Typer labels an on/off flag ``<bool>`` in ``--help``, as if it took a value; a flag has none."""
    help_option = command.get_help_option(click.Context(command))   # created once, then cached by click
    for param in [*command.params, *([help_option] if help_option is not None else [])]:
        if getattr(param, "is_flag", False) and hasattr(param, "display_type_rich"):
            param.display_type_rich = lambda ctx: None   # typer's help table: no type column for a flag
    for sub in getattr(command, "commands", {}).values():
        _flags_read_as_flags(sub)


def build_command() -> click.Command:
    """The click command of ``app``, with the help fixes applied."""
    command = typer.main.get_command(app)
    _flags_read_as_flags(command)
    return command


def main() -> None:
    try:
        build_command()(standalone_mode=True)
    except LlmnerError as exc:
        # soft_wrap: an error stays on one line whatever the terminal width (logs, pipes).
        err_console.print(f"[bold red]error:[/] {exc}", soft_wrap=True, markup=True, highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
