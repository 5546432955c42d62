"""``llmner data stats`` (documents / sentences / mentions per split and type) and ``llmner convert``
(any corpus reader -> any writer). Registered by llmner.cli.main."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from llmner.errors import ValidationError

console = Console()
err_console = Console(stderr=True)


def _progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TimeElapsedColumn(), console=err_console, transient=True)


def split_stats(name: str, split: str) -> dict[str, object]:
    """Counts of one split: documents, sentences (None without a sentence view), mentions and mentions per type
    (mentions None for an unlabeled split)."""
    from llmner.data_processing.corpora import (
        has_sentence_view,
        is_labeled,
        load_corpus,
        load_sentences,
    )

    docs = load_corpus(name, split)
    labeled = is_labeled(name, split)
    per_type = Counter(e.type for d in docs for e in d.entities)
    return {
        "documents": len(docs),
        "sentences": len(load_sentences(name, split)) if has_sentence_view(name) else None,
        "mentions": sum(per_type.values()) if labeled else None,
        "per_type": dict(per_type),
    }


def stats(
    corpus: Annotated[str | None, typer.Option("--corpus", "-c", help="one corpus (default: all)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the counts as one JSON object instead of tables")] = False,
) -> None:
    """Documents / sentences / mentions per split and per entity type of the built-in corpora."""
    from llmner.data_processing.corpora import (
        CORPUS_NAMES,
        SPLITS,
        corpus_schema,
        data_dir,
    )
    from llmner.data_processing.corpora.registry import corpus_spec

    names = [corpus_spec(corpus).name] if corpus else list(CORPUS_NAMES)
    root = data_dir()
    results: dict[tuple[str, str], dict[str, object]] = {}
    with _progress() as progress:
        task = progress.add_task("loading corpora", total=len(names) * len(SPLITS))
        for name in names:
            for split in SPLITS:
                progress.update(task, description=f"loading {name} {split}")
                results[name, split] = split_stats(name, split)
                progress.advance(task)
    if as_json:
        payload = {name: {split: results[name, split] for split in SPLITS} for name in names}
        typer.echo(orjson.dumps({"data_dir": str(root), "corpora": payload}, option=orjson.OPT_INDENT_2).decode())
        return
    console.print(f"data directory: {root}")
    for name in names:
        schema = corpus_schema(name)
        rows = [results[name, split] for split in SPLITS]
        spec = corpus_spec(name)
        console.print(f"\n[bold]{name}[/] ({schema.language}): {spec.description}")
        table = Table()
        table.add_column("")
        for split in SPLITS:
            table.add_column(split, justify="right")

        def fmt(value: object) -> str:
            return "-" if value is None else f"{value:,}"

        table.add_row("documents", *(fmt(r["documents"]) for r in rows))
        table.add_row("sentences", *(fmt(r["sentences"]) for r in rows))
        table.add_row("mentions", *("unlabeled" if r["mentions"] is None else fmt(r["mentions"]) for r in rows))
        for type_name in schema.type_names:
            table.add_row(f"  {type_name}", *("-" if r["mentions"] is None else fmt(r["per_type"].get(type_name, 0))  # type: ignore[union-attr]
                                             for r in rows))
        console.print(table)
        if spec.note:
            console.print(f"  note: {spec.note}", style="dim")


def convert(
    input: Annotated[Path, typer.Argument(help="input file (or BRAT / BC2GM directory)")],
    output: Annotated[Path, typer.Argument(help="output file (or BRAT / BC2GM directory)")],
    to_format: Annotated[str, typer.Option("--to", help="output format: jsonl, pubtator, bioc, bioc_json, brat, conll, genia, cblue, bc2gm, records")],
    from_format: Annotated[str | None, typer.Option("--from", help="input format (default: guessed from the content)")] = None,
) -> None:
    """Convert annotated documents between formats (any reader -> any writer)."""
    from llmner.data_processing.corpora.formats import get_format, guess_format

    writer = get_format(to_format)
    reader = get_format(from_format or guess_format(input))
    try:
        with _progress() as progress:
            task = progress.add_task(f"reading {input} ({reader.name})", total=2)
            docs = reader.reader(input)
            if reader.name == "records" and writer.name != "records" and any(d.entities for d in docs):
                raise ValidationError(f"{input} holds result records, which carry no note text; {writer.name} needs it: "
                                      "write documents instead (llmner run --output-format jsonl, or llmner tag)")
            progress.update(task, advance=1, description=f"writing {output} ({writer.name})")
            writer.writer(docs, output)
            progress.advance(task)
    except OSError as exc:
        raise ValidationError(f"cannot convert {input} -> {output}: {exc.strerror or exc}") from None
    mentions = sum(len(d.entities) for d in docs)
    err_console.print(f"wrote {len(docs):,} documents with {mentions:,} mentions to {output} ({writer.name})")


def register(app: typer.Typer) -> None:
    data_app = typer.Typer(name="data", help="Inspect the built-in corpora.", no_args_is_help=True)
    data_app.command("stats")(stats)
    app.add_typer(data_app, name="data")
    app.command("convert")(convert)


__all__ = ["convert", "register", "split_stats", "stats"]
