"""Evaluate a model bundle on a built-in corpus split, with and without its selector.

One generator pass: every candidate is kept with its selector score, then scored twice with the
strict scorer (``llmner.evaluation.scorer``): all candidates (generator alone) and the candidates at
or above the threshold (generator + selector). The difference is the selector's effect on
precision and recall. Used by ``llmner eval --corpus NAME --split SPLIT [--model BUNDLE] [--limit N]``.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from llmner.doc import Document
from llmner.errors import ValidationError


def evaluate_corpus(corpus: str, split: str = "test", model: str | Path | None = None, limit: int | None = None,
                    batch_documents: int = 8, pipeline: Any = None, console: Console | None = None,
                    json_out: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Run the pipeline on ``corpus``/``split`` and print strict P/R/F1 per type with and without the
    selector; returns the numbers as a dict (also written to ``json_out`` when given)."""
    from llmner.data_processing.corpora import corpus_schema, is_labeled, load_corpus
    from llmner.evaluation.scorer import score
    from llmner.pipeline import Pipeline

    if console is None:
        console = Console()
        if not console.is_terminal:   # piped to a file: don't squeeze the tables into 80 columns
            console = Console(width=120)
    if not is_labeled(corpus, split):
        raise ValidationError(f"corpus {corpus!r} split {split!r} has no gold labels to evaluate against")
    gold = load_corpus(corpus, split)
    if limit is not None:
        if limit < 1:
            raise ValidationError(f"--limit must be >= 1, got {limit}")
        gold = gold[:limit]
    schema = corpus_schema(corpus)
    pipe = pipeline if pipeline is not None else Pipeline.from_bundle(model)
    pipe.add_schema(schema)
    docs = [dataclasses.replace(d, metadata={**d.metadata, "schema": schema.name}, entities=[]) for d in gold]

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    started = time.perf_counter()
    records = []
    with Progress(TextColumn(f"eval {corpus}/{split}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, disable=not progress, transient=True) as bar:
        task = bar.add_task("docs", total=len(docs))
        for i in range(0, len(docs), batch_documents):
            batch = docs[i : i + batch_documents]
            records.extend(pipe.process(batch, select=False))
            bar.update(task, advance=len(batch))
    seconds = time.perf_counter() - started

    def predicted(with_selector: bool) -> list[Document]:
        out = []
        for d, r in zip(gold, records):
            ents = r.entities
            if with_selector:
                ents = [e for e in ents if pipe.keeps(e, schema)]
            out.append(Document(d.id, d.text, d.language, {}, list(ents)))
        return out

    without = score(gold, predicted(False))
    result: dict[str, Any] = {
        "corpus": corpus, "split": split, "documents": len(gold), "model_ids": pipe.model_ids,
        "seconds": round(seconds, 1), "without_selector": without.to_dict(),
    }
    console.print(f"[bold]{corpus}/{split}[/]: {len(gold)} documents, {sum(len(d.entities) for d in gold)} gold mentions, "
                  f"{seconds:.1f} s; models: {', '.join(f'{k}={v}' for k, v in pipe.model_ids.items())}")
    console.print(without.to_table(title="generator alone (all candidates)"))
    if pipe.selector is None:
        console.print("no selector in this model: scores above are the generator alone")
    else:
        with_sel = score(gold, predicted(True))
        result["with_selector"] = with_sel.to_dict()
        result["threshold"] = pipe.threshold_for(schema)
        console.print(with_sel.to_table(title=f"generator + selector (threshold {pipe.threshold_for(schema):.3f})"))
        console.print(effect_table(without, with_sel))
        result["selector_effect"] = {
            "precision": with_sel.strict.precision - without.strict.precision,
            "recall": with_sel.strict.recall - without.strict.recall,
            "f1": with_sel.strict.f1 - without.strict.f1,
            "dropped_candidates": without.predicted_entities - with_sel.predicted_entities,
            "dropped_true_positives": without.strict.tp - with_sel.strict.tp,
            "dropped_false_positives": without.strict.fp - with_sel.strict.fp,
        }
    if json_out is not None:
        import orjson

        Path(json_out).write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    return result


def effect_table(without: Any, with_sel: Any) -> Table:
    """Strict micro and per-type P/R/F1: generator alone -> with the selector (change)."""
    from llmner.evaluation.scorer import Counts

    table = Table(title="selector effect (strict): alone -> +selector (change)")
    table.add_column("scope", no_wrap=True)
    for name in ("precision", "recall", "F1"):
        table.add_column(name, justify="right", no_wrap=True)

    def row(label: str, a: Any, b: Any) -> None:
        cells = []
        for metric in ("precision", "recall", "f1"):
            x, y = getattr(a, metric), getattr(b, metric)
            cells.append(f"{x:.3f}->{y:.3f} ({y - x:+.3f})")
        table.add_row(label, *cells)

    row("micro", without.strict, with_sel.strict)
    for etype in sorted(set(without.per_type) | set(with_sel.per_type)):
        row(etype, without.per_type.get(etype, Counts()), with_sel.per_type.get(etype, Counts()))
    return table
