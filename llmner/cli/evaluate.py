"""``llmner eval``: score predictions against gold, or evaluate a model bundle on a built-in corpus.

Two ways to call it:

- ``llmner eval --gold FILE --pred FILE [--gold-format F] [--pred-format F] [--json OUT]`` reads
  both files with the corpus readers (any supported format; guessed from the file extension when
  not given) and prints strict micro/macro/per-type, boundary and partial P/R/F1.
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

from llmner.doc import Document
from llmner.errors import ConfigError, DataNotFoundError, ValidationError

console = Console()

# File extension -> reader format name (llmner.data_processing.corpora.formats).
_EXTENSION_FORMATS = {
    ".jsonl": "jsonl", ".xml": "bioc", ".tsv": "conll", ".conll": "conll", ".iob": "conll", ".bio": "conll",
    ".pubtator": "pubtator", ".txt": "pubtator", ".json": "cblue",
}


def guess_format(path: Path) -> str:
    """The reader format for ``path``: a directory is BRAT, otherwise by extension."""
    if path.is_dir():
        return "brat"
    fmt = _EXTENSION_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ConfigError(f"cannot guess the format of {path} from its extension; pass --gold-format/--pred-format")
    return fmt


def read_any(path: Path, fmt: str | None) -> list[Document]:
    """Documents from ``path`` in format ``fmt`` (guessed when None)."""
    if not path.exists():
        raise DataNotFoundError(f"file not found: {path}")
    fmt = fmt or guess_format(path)
    try:
        from llmner.data_processing.corpora import read_documents
    except ImportError:  # corpus readers not installed: JSONL is still readable
        if fmt != "jsonl":
            raise ConfigError(f"format {fmt!r} needs llmner.data_processing.corpora, which is not available") from None
        return _read_jsonl(path)
    return read_documents(path, fmt)


def _read_jsonl(path: Path) -> list[Document]:
    docs = []
    with path.open("rb") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                try:
                    docs.append(Document.from_json(line))
                except ValidationError as exc:
                    raise ValidationError(f"{path}:{number}: {exc}") from None
    return docs


def evaluate(
    gold: Annotated[Path | None, typer.Option("--gold", help="gold documents (any supported format)")] = None,
    pred: Annotated[Path | None, typer.Option("--pred", help="predicted documents (any supported format)")] = None,
    gold_format: Annotated[str | None, typer.Option("--gold-format", help="format of --gold (default: from the extension)")] = None,
    pred_format: Annotated[str | None, typer.Option("--pred-format", help="format of --pred (default: from the extension)")] = None,
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
    from llmner.evaluation.scorer import score

    report = score(read_any(gold, gold_format), read_any(pred, pred_format))
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
