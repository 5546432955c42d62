"""``llmner eval``: score predictions against gold, or evaluate a model bundle on a built-in corpus.

Two ways to call it:

- ``llmner eval --gold FILE --pred FILE [--gold-format F] [--pred-format F] [--type-map MAP] [--json OUT]``
  reads both files with the corpus readers (any document format, or result records of ``llmner
  run``; guessed from the content when not given), renames gold types by ``--type-map``
  (``llmner.evaluation.type_maps``) and prints strict micro/macro/per-type, boundary and partial
  P/R/F1. When the gold and predicted type sets do not intersect, a hint says so (stderr).
- ``llmner eval --corpus NAME --split SPLIT [--model BUNDLE]`` runs the model on a corpus split
  (``llmner.evaluation.corpus_eval``) and prints its scores with and without the selector, and the
  selector's effect.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table

from llmner.errors import ConfigError

if TYPE_CHECKING:
    from llmner.evaluation.corpus_eval import CorpusEvaluation
    from llmner.evaluation.scorer import Counts, Report

console = Console()
err_console = Console(stderr=True)

def evaluate(
    gold: Annotated[Path | None, typer.Option("--gold", help="gold documents (any supported format)")] = None,
    pred: Annotated[Path | None, typer.Option("--pred", help="predicted documents (any supported format)")] = None,
    gold_format: Annotated[str | None, typer.Option("--gold-format", help="format of --gold (default: guessed from the content)")] = None,
    pred_format: Annotated[str | None, typer.Option("--pred-format", help="format of --pred (default: guessed from the content)")] = None,
    type_map: Annotated[list[str] | None, typer.Option("--type-map", help="rename gold types before scoring: a shipped map (ncbi_disease), Gold=Pred pairs, or a file; repeatable")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="also write the report as JSON to this file")] = None,
    corpus: Annotated[str | None, typer.Option("--corpus", help="evaluate a model on a built-in corpus")] = None,
    split: Annotated[str, typer.Option("--split", help="corpus split (with --corpus)")] = "test",
    model: Annotated[Path | None, typer.Option("--model", help="model bundle directory (with --corpus)")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="first N documents of the split (with --corpus; quick runs)")] = None,
) -> None:
    """Score predictions against gold (strict, boundary, partial), or a model bundle on a corpus."""
    if corpus is not None:
        if gold is not None or pred is not None:
            raise ConfigError("pass either --corpus (with --split/--model) or --gold and --pred, not both")
        _evaluate_corpus(corpus, split, model, limit, json_out)
        return
    if gold is None or pred is None:
        raise ConfigError("pass --gold FILE and --pred FILE (or --corpus NAME)")
    from llmner.data_processing.corpora import read_documents
    from llmner.evaluation.scorer import score
    from llmner.evaluation.type_maps import (
        disjoint_types_hint,
        map_types,
        parse_type_map,
    )

    mapping = parse_type_map(type_map or [])
    gold_docs = map_types(read_documents(gold, gold_format), mapping)
    pred_docs = read_documents(pred, pred_format)
    hint = disjoint_types_hint(gold_docs, pred_docs)
    if hint:
        err_console.print(f"[yellow]hint:[/] {hint}", soft_wrap=True, highlight=False)
    report = score(gold_docs, pred_docs)
    console.print(report.to_table(title=f"{pred.name} vs gold {gold.name}"))
    if json_out is not None:
        json_out.write_bytes(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2))


def _evaluate_corpus(corpus: str, split: str, model: Path | None, limit: int | None = None,
                     json_out: Path | None = None) -> CorpusEvaluation:
    try:
        from llmner.data_processing.corpora import corpus_schema
        from llmner.evaluation.corpus_eval import evaluate_documents, labeled_documents
        from llmner.pipeline import Pipeline
    except ImportError as exc:
        raise ConfigError(f"llmner eval --corpus is not available: {exc}") from None
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    out = Console()
    if not out.is_terminal:   # piped to a file: don't squeeze the tables into 80 columns
        out = Console(width=120)
    gold = labeled_documents(corpus, split, limit)   # a bad split or limit fails before the model loads
    pipe = Pipeline.from_bundle(model)
    with Progress(TextColumn(f"eval {corpus}/{split}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=out, transient=True) as bar:
        task = bar.add_task("docs", total=len(gold))
        evaluation = evaluate_documents(pipe, gold, corpus_schema(corpus), corpus, split,
                                        on_batch=lambda done: bar.update(task, completed=done))
    print_corpus_evaluation(evaluation, out)
    if json_out is not None:
        json_out.write_bytes(orjson.dumps(evaluation.to_dict(), option=orjson.OPT_INDENT_2))
    return evaluation


def print_corpus_evaluation(evaluation: CorpusEvaluation, out: Console) -> None:
    """The header line, the scores without and with the selector, and the selector's effect."""
    gold_mentions = sum(len(d.entities) for d in evaluation.gold)
    out.print(f"[bold]{evaluation.corpus}/{evaluation.split}[/]: {len(evaluation.gold)} documents, {gold_mentions} gold mentions, "
              f"{evaluation.seconds:.1f} s; models: {', '.join(f'{k}={v}' for k, v in evaluation.model_ids.items())}")
    out.print(evaluation.without_selector.to_table(title="generator alone (all candidates)"))
    if evaluation.with_selector is None:
        out.print("no selector in this model: scores above are the generator alone")
        return
    out.print(evaluation.with_selector.to_table(title=f"generator + selector (threshold {evaluation.threshold:.3f})"))
    out.print(effect_table(evaluation.without_selector, evaluation.with_selector))


def effect_table(without: Report, with_sel: Report) -> Table:
    """Strict micro and per-type P/R/F1: generator alone -> with the selector (change)."""
    from llmner.evaluation.scorer import Counts

    table = Table(title="selector effect (strict): alone -> +selector (change)")
    table.add_column("scope", no_wrap=True)
    for name in ("precision", "recall", "F1"):
        table.add_column(name, justify="right", no_wrap=True)

    def row(label: str, a: Counts, b: Counts) -> None:
        cells = []
        for metric in ("precision", "recall", "f1"):
            x, y = getattr(a, metric), getattr(b, metric)
            cells.append(f"{x:.3f}->{y:.3f} ({y - x:+.3f})")
        table.add_row(label, *cells)

    row("micro", without.strict, with_sel.strict)
    for etype in sorted(set(without.per_type) | set(with_sel.per_type)):
        row(etype, without.per_type.get(etype, Counts()), with_sel.per_type.get(etype, Counts()))
    return table


def register(app: typer.Typer) -> None:
    app.command("eval")(evaluate)
