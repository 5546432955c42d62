"""``llmner view INPUT -o page.html``: tagged output (jsonl, bioc, pubtator) as one self-contained HTML page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llmner.errors import ConfigError, DataNotFoundError

_EXT = {".jsonl": "jsonl", ".xml": "bioc", ".bioc": "bioc", ".pubtator": "pubtator"}


def view(
    input: Annotated[Path, typer.Argument(help="tagged documents: jsonl, bioc or pubtator")],
    output: Annotated[Path, typer.Option("--output", "-o", help="HTML file to write")],
    fmt: Annotated[str | None, typer.Option("--format", help="jsonl, bioc or pubtator (default: from the extension)")] = None,
    dropped: Annotated[bool, typer.Option("--dropped", help="draw the selector's dropped candidates faintly (jsonl from llmner tag --keep-dropped)")] = False,
    title: Annotated[str | None, typer.Option("--title", help="page title (default: the input's name)")] = None,
    limit: Annotated[int, typer.Option("--limit", help="at most this many documents (0: all)")] = 0,
) -> None:
    """Write one HTML page (no network) showing every entity, nested ones included."""
    from llmner.data_processing.corpora import read_documents
    from llmner.viewer import ViewConfig, render_html

    if not input.exists():
        raise DataNotFoundError(f"input not found: {input}")
    fmt = fmt or _EXT.get(input.suffix.lower())
    if fmt not in ("jsonl", "bioc", "pubtator"):
        raise ConfigError(f"cannot view format {fmt!r} of {input}; pass --format jsonl, bioc or pubtator")
    docs = read_documents(input, fmt)
    if limit > 0:
        docs = docs[:limit]
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render_html(docs, ViewConfig(title=title or input.name, show_dropped=dropped)), encoding="utf-8")
    typer.echo(f"{len(docs)} documents, {sum(len(d.entities) for d in docs)} entities -> {output}")


def register(app: typer.Typer) -> None:
    app.command("view")(view)
