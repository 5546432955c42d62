"""The training documents a generator run drew: each stage's sampler replayed, no model loaded.

The generator trainer (``llmner.training.generator``) builds per-corpus example lists from the
training split and draws them with a seeded ``TemperatureSampler`` whose stream is a pure function
of (sizes, temperature, weights, seed); a resumed segment replays the same stream. For each stage
(a training config and the number of steps it ran) this script builds the example lists with the
trainer's own code (``build_example_pools``, with the base model's tokenizer loaded as the trainer
loads it, without the weights), replays the steps (``drawn_documents``) and writes one JSON file:

  {"documents": {corpus: [document ids, sorted, distinct]},
   "counts": {corpus: {"draws", "documents", "split_documents", "examples"}},
   "stages": [{"config", "steps", "seed", "draws": {corpus: n}, "documents": {corpus: n}}], ...}

``benchmarks/peer_baseline.py --train-documents FILE`` trains the equal-data peer on those documents.

``--check-state FILE`` (repeatable): a checkpoint's state (``portable_state.json``) whose sampler
must equal the replay of the stage with the same seed after as many batches as it records (the
per-corpus example counts are what this checks: they depend on every step of the example building).

Usage:
  python benchmarks/trained_documents.py --output benchmarks/results/quality_work/trained_documents.json \\
      [--stage benchmarks/campaign/gen-full/config.yaml:200 ...] \\
      [--check-state benchmarks/campaign/gen-distr/portable/portable_state.json]
Default stages: the quality campaign (docs/training.md): gen-full 200 steps, gen-top10 640, gen-distr 3000.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from array import array
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llmner.training.generator import (
    CorpusData,
    ExamplePools,
    GeneratorTrainingConfig,
    build_example_pools,
    drawn_documents,
    load_corpora,
    step_draws,
    training_sampler,
)

ROOT = Path(__file__).resolve().parents[1]
CAMPAIGN = Path("benchmarks/campaign")
DEFAULT_STAGES = (f"{CAMPAIGN}/gen-full/config.yaml:200", f"{CAMPAIGN}/gen-top10/config.yaml:640",
                  f"{CAMPAIGN}/gen-distr/config.yaml:3000")


class MemoTokenizer:
    """The run's tokenizer with its single-string calls remembered: stages that differ only in their
    seed tokenize the same chunks and prompts, and only the first stage pays for it. Every other
    attribute (chat template, eos token) is the wrapped tokenizer's."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self._ids: dict[tuple[str, bool], array] = {}

    def __call__(self, text: Any, *args: Any, **kwargs: Any) -> Any:
        if args or not isinstance(text, str) or set(kwargs) - {"add_special_tokens"}:
            return self._tokenizer(text, *args, **kwargs)
        key = (text, bool(kwargs.get("add_special_tokens", True)))
        ids = self._ids.get(key)
        if ids is None:
            ids = self._ids[key] = array("i", self._tokenizer(text, **kwargs)["input_ids"])
        return {"input_ids": list(ids)}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tokenizer, name)


def parse_stage(spec: str) -> tuple[Path, int]:
    path, sep, steps = spec.rpartition(":")
    if not sep or not steps.isdigit() or int(steps) <= 0:
        raise argparse.ArgumentTypeError(f"expected CONFIG:STEPS (a positive step count), got {spec!r}")
    return Path(path), int(steps)


class PoolBuilder:
    """Corpora, tokenizers and example pools, each built once for all the stages that share them."""

    def __init__(self, log: Any) -> None:
        self.log = log
        self._corpora: dict[tuple[Any, ...], list[CorpusData]] = {}
        self._tokenizers: dict[str, MemoTokenizer] = {}
        self._pools: dict[tuple[Any, ...], ExamplePools] = {}

    def corpora(self, config: GeneratorTrainingConfig) -> list[CorpusData]:
        key = (tuple(config.corpora), config.split, config.exclude_test_overlap, config.max_documents)
        if key not in self._corpora:
            t0 = time.process_time()
            self._corpora[key] = load_corpora(config)
            self.log(f"read {len(config.corpora)} corpora ({config.split}) in {time.process_time() - t0:.0f} s CPU")
        return self._corpora[key]

    def tokenizer(self, base_model: str) -> MemoTokenizer:
        if base_model not in self._tokenizers:
            from llmner.modeling.loading import load_tokenizer, resolve_base_model

            # What ``load_base_model`` (the trainer's loader) returns beside the model.
            self._tokenizers[base_model] = MemoTokenizer(load_tokenizer(resolve_base_model(base_model)))
        return self._tokenizers[base_model]

    def pools(self, config: GeneratorTrainingConfig) -> ExamplePools:
        key = (tuple(config.corpora), config.split, config.exclude_test_overlap, config.max_documents, config.curated,
               config.base_model, config.codec, config.definitions, config.entity_free_ratio, config.max_length,
               config.chunk_max_tokens, config.sentences_per_chunk, config.seed)
        if key not in self._pools:
            from llmner.prompts import PromptBuilder

            corpora = self.corpora(config)
            t0 = time.process_time()
            builder = PromptBuilder(config.generator_config().prompt)   # ``GeneratorModel.prompt_builder``
            self._pools[key] = build_example_pools(config, corpora, self.tokenizer(config.base_model), builder,
                                                   log=self.log)
            self.log(f"example lists built in {time.process_time() - t0:.0f} s CPU")
        return self._pools[key]


def check_state(state_file: Path, stages: Sequence[tuple[Path, GeneratorTrainingConfig, int]],
                builder: PoolBuilder) -> str:
    """Replay the stage whose sampler has the checkpoint's seed and temperature to the checkpoint's
    batch count; the replayed sampler state must equal the checkpoint's."""
    saved = json.loads(state_file.read_text())
    state = saved.get("sampler", saved)
    matches = [(path, cfg) for path, cfg, _ in stages
               if cfg.seed == int(state["seed"]) and cfg.temperature == float(state["temperature"])]
    if len(matches) != 1:
        raise SystemExit(f"--check-state {state_file}: {len(matches)} stages have seed {state['seed']} "
                         f"and temperature {state['temperature']} (need exactly one)")
    path, config = matches[0]
    sampler = training_sampler(config, builder.pools(config).sizes())
    if config.batch_per_corpus:   # one next_batch per micro-batch
        steps = int(state["batches"]) // config.grad_accum
    else:
        steps = int(state["drawn"]) // (config.batch_size * config.grad_accum)
    for _ in range(steps):
        step_draws(sampler, config)
    replayed = sampler.state_dict()
    expected = dict(state)
    expected.setdefault("corpus_weights", {})
    if replayed != expected:
        raise SystemExit(f"--check-state {state_file}: the replay of {path} differs after {steps} steps:\n"
                         f"  replayed   {replayed}\n  checkpoint {expected}")
    return f"{state_file}: sampler state after {steps} steps of {path} equals the replay ({replayed})"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", action="append", type=parse_stage, default=None, metavar="CONFIG:STEPS",
                        help="a training config (YAML/JSON) and the steps that stage ran; repeatable, in order "
                             f"(default: {' '.join(DEFAULT_STAGES)})")
    parser.add_argument("--check-state", action="append", type=Path, default=[], metavar="STATE_JSON",
                        help="a checkpoint state (portable_state.json) whose sampler the replay must reproduce")
    parser.add_argument("--output", type=Path, required=True, help="the JSON file to write")
    args = parser.parse_args(argv)

    def log(message: str) -> None:
        print(message, file=sys.stderr)

    specs = args.stage or [parse_stage(s) for s in DEFAULT_STAGES]
    stages = []
    for path, steps in specs:
        resolved = path if path.is_absolute() or path.exists() else ROOT / path
        stages.append((path, GeneratorTrainingConfig.from_file(resolved), steps))
    builder = PoolBuilder(log)

    total: dict[str, Counter[str]] = {}
    split_documents: dict[str, int] = {}
    examples: dict[str, int] = {}
    stage_rows = []
    for path, config, steps in stages:
        if steps > config.steps:
            log(f"warning: {path}: {steps} steps asked, its schedule has {config.steps}")
        pools = builder.pools(config)
        drawn = drawn_documents(config, pools, steps)
        for corpus, counts in drawn.items():
            total.setdefault(corpus, Counter()).update(counts)
            split_documents[corpus] = max(split_documents.get(corpus, 0), pools.stats[corpus].documents)
            examples[corpus] = max(examples.get(corpus, 0), len(pools.texts[corpus]))
        stage_rows.append({"config": str(path), "steps": steps, "seed": config.seed,
                           "draws": {c: sum(n.values()) for c, n in drawn.items()},
                           "documents": {c: len(n) for c, n in drawn.items()},
                           "sampler_sizes": pools.sizes()})
        log(f"{path}: {steps} steps, draws " + ", ".join(f"{c} {sum(n.values())}" for c, n in drawn.items()))

    checks = [check_state(f, stages, builder) for f in args.check_state]
    for line in checks:
        log("check passed: " + line)

    result = {
        "documents": {c: sorted(n) for c, n in total.items()},
        "counts": {c: {"draws": sum(n.values()), "documents": len(n), "split_documents": split_documents[c],
                       "examples": examples[c]} for c, n in total.items()},
        "stages": stage_rows,
        "checks": checks,
        "split": sorted({cfg.split for _, cfg, _ in stages}),
        "command": "python benchmarks/trained_documents.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "generated": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=1))
    print("| corpus | draws | distinct documents | training documents | examples |")
    print("|---|---|---|---|---|")
    for corpus, c in result["counts"].items():
        print(f"| {corpus} | {c['draws']} | {c['documents']} | {c['split_documents']} | {c['examples']} |")
    log(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
