"""``llmner curate``: select training examples by IFD (BioSelectTune hybrid superfiltering)."""

from __future__ import annotations

from pathlib import Path

import typer

from llmner.cli.output import say


def register(app: typer.Typer) -> None:
    app.command("curate")(curate_command)


def curate_command(
    corpus: list[str] | None = typer.Option(None, "--corpus", help="Corpus name (repeatable; with --from-scores: a filter)."),
    output: Path = typer.Option(..., "--output", "-o", help="Selected subset (JSONL); scores and summary go beside it."),
    keep_percent: float = typer.Option(50.0, "--keep-percent", "-k", help="Top k % of entity examples (IFD < 1) kept."),
    scorer: str = typer.Option("smollm2-135m-instruct", "--scorer",
                               help="Weak model sharing the generator's tokenizer: packaged name or local dir."),
    split: str = typer.Option("train", "--split"),
    batch_size: int = typer.Option(8, "--batch-size"),
    max_length: int = typer.Option(512, "--max-length", help="Examples longer than this are skipped (as in training)."),
    codec: str = typer.Option("inline", "--codec"),
    definitions: str = typer.Option("compact", "--definitions"),
    max_documents: int | None = typer.Option(None, "--max-documents", help="Use only the first N documents per corpus."),
    device: str = typer.Option("auto", "--device"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    per_corpus: bool = typer.Option(True, "--per-corpus/--pooled",
                                    help="Rank IFD within each corpus (keeps the mixture) or across all of them."),
    from_scores: Path | None = typer.Option(None, "--from-scores",
                                            help="An earlier run's *.scores.jsonl: select again without scoring."),
) -> None:
    """Score examples by IFD = PPL(answer | instruction) / PPL(answer); drop IFD >= 1, keep the top k %
    of entity examples and every entity-free one. Train on the result with `--curated FILE`."""
    from llmner.errors import ConfigError
    from llmner.training.curation import CurationConfig, curate

    if not corpus and from_scores is None:
        raise ConfigError("give --corpus (repeatable) to score, or --from-scores FILE to select again")
    cfg = CurationConfig(corpora=list(corpus or []), output=str(output), per_corpus=per_corpus,
                         from_scores=str(from_scores) if from_scores else None, split=split, scorer=scorer, keep_percent=keep_percent,
                         batch_size=batch_size, max_length=max_length, codec=codec, definitions=definitions,
                         max_documents=max_documents, device=device)
    result = curate(cfg, progress=progress, log=say)
    say(f"subset: {result.subset_path}\nscores: {result.scores_path}\nsummary: {result.summary_path}")
