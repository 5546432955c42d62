"""``llmner eval``: score predictions against gold, or evaluate a model bundle on a built-in corpus.

Two ways to call it:

- ``llmner eval --gold FILE --pred FILE [--gold-format F] [--pred-format F] [--type-map MAP] [--json OUT]``
  reads both files with the corpus readers (any document format, or result records of ``llmner
  run``; guessed from the content when not given), renames gold types by ``--type-map``
  (``llmner.evaluation.type_maps``) and prints strict micro/macro/per-type, boundary and partial
  P/R/F1. When the gold and predicted type sets do not intersect, a hint says so (stderr).
- ``llmner eval --corpus NAME --split SPLIT [--model BUNDLE]`` runs the model on a corpus split and
  delegates to ``llmner.evaluation.corpus_eval.evaluate_corpus(corpus=, split=, model=)``, which
  prints its own report (with and without the selector).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console

from llmner.errors import ConfigError

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
                     json_out: Path | None = None) -> Any:
    try:
        from llmner.evaluation.corpus_eval import evaluate_corpus
    except ImportError as exc:
        raise ConfigError(f"llmner eval --corpus is not available: {exc}") from None
    return evaluate_corpus(corpus=corpus, split=split, model=model, limit=limit, json_out=json_out)


def register(app: typer.Typer) -> None:
    app.command("eval")(evaluate)
