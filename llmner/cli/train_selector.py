"""``llmner train selector``: train the entity selector on a corpus (optionally with the generator's
own false positives as negatives), choose the threshold on dev, write the selector directory."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from llmner.cli.output import say

if TYPE_CHECKING:
    from llmner.doc import Document, Entity


def generator_predictions_fn(generator: Path, schemas: list[Any], limit: int | None,
                             batch_documents: int = 8, max_chars: int | None = None) -> Callable[[Sequence[Document]], dict[str, list[Entity]]]:
    """``docs -> {doc_id: [Entity]}`` from a model bundle or a generator directory (selector off),
    with a progress bar; ``limit`` and ``max_chars`` apply per schema (the first documents of each corpus)."""
    from rich.progress import Progress

    from llmner.training.selector import (
        first_per_schema,
        generator_candidates,
        generator_pipeline,
    )

    pipe = generator_pipeline(generator, schemas)

    def predict(docs: Sequence[Document]) -> dict[str, list[Entity]]:
        chosen = first_per_schema(docs, limit, max_chars)
        with Progress() as bar:
            task = bar.add_task("generator candidates", total=len(chosen))
            return generator_candidates(pipe, chosen, batch_documents, on_batch=lambda done: bar.update(task, completed=done))

    return predict


def train_selector_command(
    corpus: Annotated[list[str], typer.Option("--corpus", help="corpus name, e.g. ncbi_disease (repeatable: one selector for several corpora)")],
    output: Annotated[Path, typer.Option("--output", "-o", help="selector directory to write")],
    generator: Annotated[Path | None, typer.Option("--generator", help="model bundle or generator dir: its false positives become negatives")] = None,
    split: Annotated[str, typer.Option("--split")] = "train",
    dev_split: Annotated[str, typer.Option("--dev-split", help="split for choosing the threshold ('' = none)")] = "dev",
    max_documents: Annotated[int | None, typer.Option("--max-documents", help="first N training documents per corpus")] = None,
    train_documents: Annotated[Path | None, typer.Option("--train-documents", help="JSON {corpus: [document ids]} (or under \"documents\", as benchmarks/trained_documents.py writes): train on these documents only, e.g. the ones the generator drew")] = None,
    dev_documents: Annotated[int | None, typer.Option("--dev-documents", help="first N dev documents per corpus")] = None,
    generator_documents: Annotated[int | None, typer.Option("--generator-documents", help="documents per corpus tagged by the generator (it is slow on CPU)")] = None,
    generator_chars: Annotated[int | None, typer.Option("--generator-chars", help="characters per corpus tagged by the generator: the first documents until their texts hold this many")] = None,
    encoder: Annotated[str, typer.Option("--encoder", help="packaged:minilm or a local BERT-style directory")] = "packaged:minilm",
    head: Annotated[str, typer.Option("--head", help="span (one pass per marked candidate) or tokens (O/B/I per piece for a type, one pass per sentence and type)")] = "span",
    trainable_layers: Annotated[int, typer.Option("--trainable-layers", help="top encoder layers trained (stored fp16)")] = 2,
    max_length: Annotated[int, typer.Option("--max-length")] = 160,
    epochs: Annotated[float, typer.Option("--epochs")] = 1.0,
    steps: Annotated[int, typer.Option("--steps", help="optimizer steps (0: from --epochs)")] = 0,
    groups_per_step: Annotated[int, typer.Option("--groups-per-step", help="gold groups per step (span head)")] = 4,
    passes_per_step: Annotated[int, typer.Option("--passes-per-step", help="(sentence, type) passes per step (tokens head)")] = 16,
    per_mention: Annotated[int, typer.Option("--per-mention", help="negatives per gold mention")] = 8,
    paraphrase_rate: Annotated[float, typer.Option("--paraphrase-rate", help="share of passes that show the type under another of its training namings (tokens head)")] = 0.0,
    add_characters_min_count: Annotated[int, typer.Option("--add-characters-min-count", help="characters of the training texts the base vocabulary reads as [UNK] (e.g. Chinese for MiniLM), seen at least this often, get embedding rows of their own (0: none)")] = 0,
    added_pieces_lr: Annotated[float, typer.Option("--added-pieces-lr", help="learning rate of the added characters' embedding rows")] = 1e-3,
    infonce_weight: Annotated[float, typer.Option("--infonce-weight", help="weight of InfoNCE over each gold mention and its negatives")] = 1.0,
    lr: Annotated[float, typer.Option("--lr", help="encoder learning rate")] = 5e-5,
    head_lr: Annotated[float, typer.Option("--head-lr")] = 1e-3,
    checkpoint_every: Annotated[int, typer.Option("--checkpoint-every")] = 200,
    resume: Annotated[bool, typer.Option("--resume", help="continue from the newest checkpoint in --output")] = False,
    init_from: Annotated[Path | None, typer.Option("--init-from", help="a saved selector to train further (its head and trained layers), instead of a fresh head; a fresh optimizer")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 13,
    model_id: Annotated[str, typer.Option("--model-id", help="id written into results (default: selector-<corpus>)")] = "",
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Train the selector (span head: InfoNCE + BCE; tokens head: every piece's label + InfoNCE), choose its threshold on dev, save it with a training card."""
    from llmner.data_processing.corpora import (
        corpus_schema,
        load_corpus,
        without_test_overlap,
    )
    from llmner.modeling.selector import SelectorConfig
    from llmner.training.negatives import NegativeConfig
    from llmner.training.selector import SelectorTrainingConfig, train_selector

    if not progress:   # one log line per 10 steps instead of a progress bar
        import logging

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    corpora = list(dict.fromkeys(corpus))
    schemas = {name: corpus_schema(name) for name in corpora}

    def read(name: str, which: str, limit: int | None, only: Sequence[str] | None = None) -> list[Any]:
        # Ids are prefixed by corpus: sentence corpora reuse ids like "train-0". As every trainer, no
        # training document that is also a test document of any corpus.
        docs = load_corpus(name, which)
        docs = without_test_overlap(docs) if which == "train" else docs
        if only is not None:
            wanted = set(only)
            docs = [d for d in docs if d.id in wanted]
        return [dataclasses.replace(d, id=f"{name}:{d.id}", metadata={**d.metadata, "schema": name}) for d in docs[:limit]]

    listed: dict[str, list[str]] | None = None
    if train_documents is not None:
        data = json.loads(train_documents.read_text())
        listed = data.get("documents", data)
        missing = sorted(set(corpora) - set(listed))
        if missing:
            raise typer.BadParameter(f"{train_documents} lists no documents for {', '.join(missing)}", param_hint="--train-documents")
    train_docs = [d for name in corpora for d in read(name, split, max_documents, listed[name] if listed else None)]
    dev_docs = [d for name in corpora for d in read(name, dev_split, dev_documents)] if dev_split else []
    label = "+".join(corpora) if len(corpora) <= 3 else f"{len(corpora)}corpora"
    sel_cfg = SelectorConfig(encoder=encoder, head=head, trainable_layers=trainable_layers, max_length=max_length,
                             model_id=model_id or f"selector-{label}-{Path(output).name}")
    cfg = SelectorTrainingConfig(epochs=epochs, max_steps=steps, groups_per_step=groups_per_step,
                                 passes_per_step=passes_per_step, paraphrase_rate=paraphrase_rate,
                                 add_characters_min_count=add_characters_min_count, added_pieces_learning_rate=added_pieces_lr,
                                 infonce_weight=infonce_weight, learning_rate=lr,
                                 head_learning_rate=head_lr, checkpoint_every=checkpoint_every, seed=seed,
                                 negatives=NegativeConfig(per_mention=per_mention, seed=seed))
    predictions = (generator_predictions_fn(generator, list(schemas.values()), generator_documents, max_chars=generator_chars)
                   if generator else None)
    chosen = schemas[corpora[0]] if len(corpora) == 1 else schemas
    result = train_selector(train_docs, dev_docs, chosen, output, sel_cfg, cfg, generator_predictions=predictions,
                            resume=resume, progress=progress, init_from=init_from,
                            card_extra={"corpus": corpora[0] if len(corpora) == 1 else corpora, "split": split, "dev_split": dev_split,
                                        "generator": str(generator) if generator else None})
    dev = result.dev
    say(f"selector -> {result.output}: {result.steps} steps, last loss {sum(result.losses[-10:]) / max(1, len(result.losses[-10:])):.4f}, "
        f"threshold {result.threshold:.3f}"
        + (f", dev P {dev['precision']:.3f} R {dev['recall']:.3f} F1 {dev['f1']:.3f} on {dev['candidates']} candidates" if dev else ""))


def register(app: typer.Typer) -> None:
    app.command("selector")(train_selector_command)
    app.command("average-selectors")(average_selectors_command)


def average_selectors_command(
    sources: Annotated[list[Path], typer.Argument(help="selector directories of one architecture (e.g. a selector and its continuation)")],
    output: Annotated[Path, typer.Option("--output", "-o", help="selector directory to write")],
    model_id: Annotated[str, typer.Option("--model-id", help="the averaged selector's id")],
) -> None:
    """Average selectors' trained weights element-wise (a model soup) into one selector."""
    from llmner.training.selector import average_selectors

    out = average_selectors(sources, output, model_id)
    say(f"selector {out}: the mean of {len(sources)} selectors' weights; choose its threshold on dev")
