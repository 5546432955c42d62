"""``llmner train reader``: train the reader (a tagging head on a frozen multilingual LM) on a corpus."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llmner.cli.output import say


def train_reader_command(
    corpus: Annotated[str, typer.Option("--corpus", help="corpus name, e.g. cmeee")],
    output: Annotated[Path, typer.Option("--output", "-o", help="run directory: features/, checkpoints/, reader/")],
    base_model: Annotated[str, typer.Option("--base-model", help="packaged model name or a local Hugging Face directory (kept frozen)")] = "gemma-3-270m",
    dev_split: Annotated[str, typer.Option("--dev-split", help="split scored after every epoch (nothing is chosen on it)")] = "dev",
    max_documents: Annotated[int | None, typer.Option("--max-documents", help="first N training documents")] = None,
    dev_documents: Annotated[int | None, typer.Option("--dev-documents", help="first N dev documents")] = None,
    epochs: Annotated[int, typer.Option("--epochs")] = 6,
    lr: Annotated[float, typer.Option("--lr")] = 2e-3,
    hold_out_every: Annotated[int, typer.Option("--hold-out-every", help="every n-th training record is held out for threshold choices (0: none)")] = 30,
    seed: Annotated[int, typer.Option("--seed")] = 0,
) -> None:
    """Train the reader's head (features computed once and kept in the run directory; resumes where a run stopped)."""
    from llmner.data_processing.corpora import load_corpus
    from llmner.modeling.reader import ReaderConfig
    from llmner.training.reader import ReaderTrainingConfig, train_reader

    train_docs = load_corpus(corpus, "train")[:max_documents]
    dev_docs = load_corpus(corpus, dev_split)[:dev_documents] if dev_split else []
    config = ReaderTrainingConfig(reader=ReaderConfig(base_model=base_model), epochs=epochs, lr=lr, hold_out_every=hold_out_every, seed=seed)
    train_reader(train_docs, dev_docs, config, output, log=say)
    say(f"reader written to {output / 'reader'}")


def register(app: typer.Typer) -> None:
    app.command("reader")(train_reader_command)
