"""``llmner calibrate BUNDLE --corpus ...``: per-schema selection settings from each corpus's dev split.

Runs the bundle's generator on the last dev documents of every corpus given (or reads its candidates
kept earlier: ``--candidates DIR``), and chooses together, for that corpus's schema, the selector
threshold of the generator's candidates, the proposal threshold of the selector's own spans and the
overlap rule between them (``llmner.evaluation.calibration``). A threshold or rule other than the
baseline (the global threshold, the proposal threshold chosen alone) is kept only when out-of-bag
resamples show the full choice winning (``--min-evidence``). The choices go into the bundle's
``bundle.json`` (``selector_thresholds``, ``proposal_threshold[s]``, ``proposal_overlaps``) beside a
``calibration.json`` that records every number. A corpus whose language the selector does not judge is
calibrated on the generator's own entity scores against keeping every candidate
(``generator_thresholds``). ``--open-bias-grid 0.5,1,2`` first chooses each schema's bonus for opening a
tag the same way (against no bonus; ``open_bias``), then calibrates on the candidates it produces.
``--dry-run`` prints without writing.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from llmner.cli.output import say


def register(app: typer.Typer) -> None:
    app.command("calibrate")(calibrate_command)


def calibrate_command(
    bundle: Annotated[Path, typer.Argument(help="model bundle directory")],
    corpus: Annotated[list[str], typer.Option("--corpus", help="corpus whose dev split calibrates its schema (repeatable)")],
    sentences: Annotated[int, typer.Option("--sentences", help="dev sentences per corpus, from the end of the split")] = 80,
    min_gold: Annotated[int, typer.Option("--min-gold", help="extend a corpus's documents until they hold this many gold mentions")] = 40,
    min_candidates: Annotated[int, typer.Option("--min-candidates", help="fewer scored candidates: keep the global threshold")] = 20,
    bootstrap: Annotated[int, typer.Option("--bootstrap", help="document resamples for the out-of-bag evidence")] = 200,
    min_evidence: Annotated[float, typer.Option("--min-evidence", help="share of resamples in which the dev-chosen threshold must beat the global one out of bag (0: always move)")] = 0.8,
    split: Annotated[str, typer.Option("--split", help="split to calibrate on")] = "dev",
    selector_backend: Annotated[str, typer.Option("--selector-backend", help="onnx (as served) or torch")] = "onnx",
    open_bias_grid: Annotated[str | None, typer.Option("--open-bias-grid", help="also choose each schema's bonus for opening a tag among these values (e.g. 0.5,1,2; 0 is always a candidate), before the thresholds")] = None,
    candidates: Annotated[Path | None, typer.Option("--candidates", help="read each corpus's generator candidates from this directory (<corpus>.own.jsonl, as benchmarks/schemas.py --cache keeps them) instead of generating; --sentences and --min-gold then do not apply")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the thresholds, write nothing")] = False,
) -> None:
    """Choose each schema's selection settings (selector threshold, proposal threshold, overlap rule; generator score where the selector does not judge) on the bundle's own dev candidates and store them in the bundle."""
    from llmner.bundle import load_manifest, write_calibration, write_manifest
    from llmner.data_processing.corpora import CORPUS_NAMES
    from llmner.errors import ConfigError
    from llmner.evaluation.calibration import (
        CalibrationConfig,
        calibrate,
        calibrate_open_bias,
        rule_label,
        store_calibration,
    )
    from llmner.evaluation.predict import PredictionCache
    from llmner.pipeline import Pipeline, PipelineConfig

    try:
        grid = [float(v) for v in open_bias_grid.split(",")] if open_bias_grid else []
    except ValueError:
        raise ConfigError(f"--open-bias-grid {open_bias_grid!r}: expected numbers separated by commas, e.g. 0.5,1,2") from None
    if grid and candidates is not None:
        raise ConfigError("--open-bias-grid generates afresh at each bonus: it cannot read --candidates")
    unknown = sorted(set(corpus) - set(CORPUS_NAMES))
    if unknown:
        raise ConfigError(f"unknown corpus {', '.join(unknown)} (known: {', '.join(CORPUS_NAMES)})")
    manifest = load_manifest(bundle)
    config = CalibrationConfig(corpora=list(corpus), split=split, sentences=sentences, min_gold=min_gold,
                               min_candidates=min_candidates, bootstrap=bootstrap, min_evidence=min_evidence)
    pipe = Pipeline.from_bundle(bundle, PipelineConfig(selector_backend=selector_backend))
    # Calibrate against the global threshold (selector) or keeping all (generator): earlier per-schema
    # settings must not leak in.
    pipe.thresholds, pipe.generator_thresholds = {}, {}
    pipe.proposal_thresholds, pipe.proposal_overlaps = {}, {}
    started = time.perf_counter()
    biases = []
    if grid:
        pipe.open_biases = {}
        for name in corpus:
            b = calibrate_open_bias(pipe, name, config, grid)
            won = "no resample" if b.evidence is None else f"won {b.evidence:.0%} of resamples out of bag (mean gain {b.oob_gain:+.3f})"
            say(f"{name}: open_bias F1 " + ", ".join(f"{v:g}: {f:.3f}" for v, f in b.f1_by_bias.items())
                + f"; dev-best {b.best_bias:g} {won}; stored {b.open_bias:g}")
            biases.append(b)
        pipe.open_biases = {b.schema: b.open_bias for b in biases if b.open_bias}
    results = calibrate(pipe, config, log=say, stored=PredictionCache(candidates) if candidates is not None else None)
    say(f"{len(results)} schemas calibrated in {time.perf_counter() - started:.0f} s: "
        + ", ".join(f"{r.schema} {rule_label(r.chosen, r.default)}" + (" (generator score)" if r.judge == "generator" else "")
                    for r in results))
    if dry_run:
        return
    store_calibration(manifest, results)
    if grid:
        manifest.open_bias = dict(pipe.open_biases)
    write_manifest(bundle, manifest)
    calibration = write_calibration(bundle, {
        "split": split, "sentences": sentences, "min_gold": min_gold, "min_candidates": min_candidates,
        "bootstrap": bootstrap, "min_evidence": min_evidence, "selector_backend": selector_backend,
        "global_threshold": pipe.threshold, "candidates": str(candidates) if candidates else None,
        "schemas": [r.to_dict() for r in results],
        "open_bias_grid": grid, "open_bias": [b.to_dict() for b in biases]})
    say(f"wrote the selection settings{', open_bias' if grid else ''} into {bundle / 'bundle.json'} and {calibration}")
