"""``llmner train generator``: LoRA-tune the generator on one or more corpora.

Options override the values of ``--config FILE`` (YAML or JSON with the keys of
``GeneratorTrainingConfig``); options left out keep the file's (or the default) value. With
``--resume --output DIR`` and no ``--config``, the settings saved in the newest checkpoint are used.
"""

from __future__ import annotations

from pathlib import Path

import typer

from llmner.cli.output import say


def register(app: typer.Typer) -> None:
    app.command("generator")(train_generator_command)
    app.command("export-checkpoint")(export_checkpoint_command)
    app.command("export-generator")(export_generator_command)


def export_checkpoint_command(
    output: Path = typer.Argument(..., help="Training output directory (its newest checkpoint is exported)."),
    dest: Path = typer.Argument(..., help="Directory to write the portable checkpoint to."),
) -> None:
    """Write the newest checkpoint of a run as a portable one: adapter + JSON state, no optimizer.
    Small enough to commit; resume it elsewhere with --resume --resume-from DEST."""
    from llmner.training.checkpoint import export_portable, latest_checkpoint
    from llmner.training.generator import CHECKPOINT_DIR

    found = latest_checkpoint(output / CHECKPOINT_DIR)
    if found is None:
        raise typer.BadParameter(f"no checkpoint under {output / CHECKPOINT_DIR}")
    written = export_portable(found, dest)
    size = sum(p.stat().st_size for p in written.rglob("*") if p.is_file())
    say(f"{found.name} -> {written} ({size / 1e6:.1f} MB)")


def export_generator_command(
    checkpoint: Path = typer.Argument(..., help="A checkpoint: step-N of a run, a portable one (export-checkpoint), or the generator directory a finished run wrote."),
    like: Path = typer.Option(..., "--like", help="Generator directory whose settings, schemas and base model to use."),
    output: Path = typer.Option(..., "--output", "-o", help="Generator directory to write."),
    name: str = typer.Option(..., "--name", help="Generator name (the card's; bundle.json's generator_id)."),
) -> None:
    """Write a generator directory with another generator's settings (for `llmner bundle`) from a run's checkpoint or its finished generator."""
    from llmner.training.checkpoint import export_generator

    written = export_generator(checkpoint, like, output, name)
    size = sum(p.stat().st_size for p in written.rglob("*") if p.is_file())
    say(f"{checkpoint} -> {written} ({size / 1e6:.1f} MB)")


def train_generator_command(
    corpus: list[str] | None = typer.Option(None, "--corpus", help="Corpus name (repeatable), e.g. ncbi_disease, genia, cmeee."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Generator directory to write (checkpoints go under it)."),
    config: Path | None = typer.Option(None, "--config", help="YAML/JSON file with GeneratorTrainingConfig keys."),
    base: str | None = typer.Option(None, "--base", help="Base model: packaged name (smollm2-135m-instruct) or local dir."),
    split: str | None = typer.Option(None, "--split", help="Corpus split to train on (default train)."),
    temperature: float | None = typer.Option(None, "--temperature", help="Corpus sampling temperature: p ~ n^(1/T)."),
    steps: int | None = typer.Option(None, "--steps", help="Optimizer steps."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Examples per micro-batch."),
    grad_accum: int | None = typer.Option(None, "--grad-accum", help="Micro-batches per optimizer step."),
    lr: float | None = typer.Option(None, "--lr", help="Peak learning rate (AdamW)."),
    warmup_steps: int | None = typer.Option(None, "--warmup-steps", help="Linear warmup steps (-1: 5% of steps)."),
    max_length: int | None = typer.Option(None, "--max-length", help="Longest example in tokens; longer ones are skipped."),
    entity_free_ratio: float | None = typer.Option(None, "--entity-free-ratio", help="Entity-free chunks per entity chunk (<0: all)."),
    curated: Path | None = typer.Option(None, "--curated", help="Subset file written by `llmner curate`."),
    init_from: Path | None = typer.Option(None, "--init-from", help="Start from the LoRA weights of this generator directory."),
    lora_r: int | None = typer.Option(None, "--lora-r", help="LoRA rank."),
    lora_alpha: int | None = typer.Option(None, "--lora-alpha", help="LoRA alpha."),
    lora_dropout: float | None = typer.Option(None, "--lora-dropout", help="LoRA dropout."),
    codec: str | None = typer.Option(None, "--codec", help="Target format: inline, lines or json."),
    definitions: str | None = typer.Option(None, "--definitions", help="Type definitions in the prompt: compact, full, none."),
    seed: int | None = typer.Option(None, "--seed"),
    device: str | None = typer.Option(None, "--device", help="auto, cpu or cuda."),
    checkpoint_every: int | None = typer.Option(None, "--checkpoint-every", help="Steps between checkpoints."),
    stop_after: int | None = typer.Option(None, "--stop-after", help="End this segment at this step (resume later)."),
    cpu_budget: float | None = typer.Option(None, "--cpu-budget", help="End this segment after this many seconds of process CPU time (equal-compute ablations)."),
    time_budget: float | None = typer.Option(None, "--time-budget", help="End this segment after this many wall-clock seconds (a lent GPU's minutes)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the newest checkpoint under --output."),
    resume_from: Path | None = typer.Option(None, "--resume-from", help="With --resume: a checkpoint (e.g. a portable one) to continue from when --output has none."),
    vary_schema: bool | None = typer.Option(None, "--vary-schema/--no-vary-schema", help="Show each batch a varied schema (order, subset, paraphrased names)."),
    train_layers_from: int | None = typer.Option(None, "--train-layers-from", help="Freeze the LoRA of layers below this one."),
    dev_split: str | None = typer.Option(None, "--dev-split", help="Split for the dev loss (with --eval-every)."),
    eval_every: int | None = typer.Option(None, "--eval-every", help="Steps between dev-loss evaluations (0: never)."),
    max_documents: int | None = typer.Option(None, "--max-documents", help="Use only the first N documents per corpus."),
    gradient_checkpointing: bool | None = typer.Option(None, "--gradient-checkpointing/--no-gradient-checkpointing"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar (else one log line per step)."),
) -> None:
    """LoRA-train the generator; writes a generator directory (adapter, config, schemas, training card)."""
    from llmner.training.generator import (
        GeneratorTrainingConfig,
        resume_config,
        train_generator,
    )

    saved = resume_config(output, resume_from) if resume and output and not config else None
    if config:
        cfg = GeneratorTrainingConfig.from_file(config)
    elif saved is not None:
        cfg = saved          # --resume --output DIR alone continues the interrupted run as it was
    else:
        cfg = GeneratorTrainingConfig()
    cfg = cfg.with_overrides(
        corpora=list(corpus) if corpus else None, output=str(output) if output else None, base_model=base, split=split,
        temperature=temperature, steps=steps, batch_size=batch_size, grad_accum=grad_accum, lr=lr,
        warmup_steps=warmup_steps, max_length=max_length, entity_free_ratio=entity_free_ratio,
        curated=str(curated) if curated else None, init_from=str(init_from) if init_from else None, lora_r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
        codec=codec, definitions=definitions, seed=seed, device=device, checkpoint_every=checkpoint_every,
        stop_after=stop_after, cpu_budget_s=cpu_budget, time_budget_s=time_budget, resume=resume or None, dev_split=dev_split, eval_every=eval_every,
        max_documents=max_documents, gradient_checkpointing=gradient_checkpointing,
        resume_from=str(resume_from) if resume_from else None, vary_schema=vary_schema, train_layers_from=train_layers_from,
    )
    result = train_generator(cfg, progress=progress, log=say)
    card = result.card
    # A segment whose budget ended it before its first step has no loss or speed to report.
    numbers = (f"  final loss {card['final_loss']:.4f}  {card['tokens_per_s']:.0f} tokens/s  "
               f"{card['seconds_per_step']:.2f} s/step" if card.get("final_loss") is not None else "")
    say(f"steps {result.steps}/{cfg.steps}{numbers}" + ("" if result.finished else "  (segment ended; rerun with --resume)"))
