"""Probe (session 28, not adopted): does the generator's own score, or a score-wins overlap rule, help the judge?

Stage 5's generator gained on the shipped one alone (+1.7 macro, dev) but not once the selector judged.
Where the selector drops what the generator gained, the generator's confidence
(``Entity.generator_score``, the probability of the entity's tags) might rescue it. Against each corpus's
shipped ``SelectionRule`` (``Pipeline.selection_rule``), on stored dev candidates judged afresh by the
shipped selector as served (ONNX; ``llmner.evaluation.rescore.judge_stored``, proposals included):

- ``or g``: a generator candidate whose generator score reaches g is kept whatever the selector says;
- ``and g``: one whose generator score is below g goes whatever the selector says;
- ``blend w``: its selector score replaced by sigmoid(w logit(selector) + (1 - w) logit(generator));
- ``wins p``: proposals kept from p, and where a proposal and a candidate of its type overlap, the one
  with the higher selector score stays (the overlap rules of ``llmner.decoding.overlaps`` decide by reader).

Strict F1 of the corpus's own types; no choice is made here (every setting is printed, so a gain would
still need an out-of-bag check before it could ship). Usage (one thread, about 3 CPU minutes per cache):

    PYTHONPATH=. .venv/bin/python benchmarks/campaign/judge_probe.py \\
        --candidates s4=benchmarks/campaign/gen-s4/checks/step2000-own200-bf16 \\
        --candidates s5=benchmarks/campaign/gen-s5/checks/step2000-own200-bf16 \\
        --out benchmarks/campaign/judge_probe.md

Results and the decision are in docs/training.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

CORPORA = ["ncbi_disease", "bc5cdr", "genia", "jnlpba", "bc2gm", "linnaeus", "s800", "cmeee"]
OR_GRID = (0.9, 0.95, 0.98, 0.99)
AND_GRID = (0.1, 0.3, 0.5)
BLEND_GRID = (0.5, 0.7, 0.85)
WINS_GRID = (0.8, 0.9, 0.95)


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--candidates", action="append", required=True, help="NAME=DIR of <corpus>.own.jsonl")
    parser.add_argument("--corpus", action="append", default=None, help="default: the 8 corpora")
    parser.add_argument("--out", type=Path, default=None, help="markdown file to write")
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    torch.set_num_threads(1)
    from llmner.bundle import default_bundle_path
    from llmner.data_processing.corpora import corpus_schema, load_corpus
    from llmner.decoding.selection import SelectionRule
    from llmner.doc import Document, Entity
    from llmner.evaluation.bootstrap import per_document_counts
    from llmner.evaluation.predict import PredictionCache
    from llmner.evaluation.rescore import judge_stored
    from llmner.pipeline import Pipeline, PipelineConfig

    pipe = Pipeline.from_bundle(default_bundle_path(), PipelineConfig(selector_backend="onnx"))
    corpora = args.corpus or CORPORA

    def generator_candidate(e: Entity) -> bool:
        return e.source != "selector" and e.generator_score is not None

    def with_generator(rule: SelectionRule, mode: str, value: float) -> Callable[[list[Entity]], list[Entity]]:
        def select(entities: list[Entity]) -> list[Entity]:
            out = []
            for e in entities:
                if generator_candidate(e) and e.score is not None:
                    if mode == "or" and e.generator_score >= value:
                        e = dataclasses.replace(e, score=1.0)
                    elif mode == "and" and e.generator_score < value:
                        continue
                    elif mode == "blend":
                        e = dataclasses.replace(e, score=1 / (1 + math.exp(-(value * _logit(e.score)
                                                                            + (1 - value) * _logit(e.generator_score)))))
                out.append(e)
            return rule.select(out)
        return select

    def score_wins(rule: SelectionRule, proposals: float) -> Callable[[list[Entity]], list[Entity]]:
        keep = SelectionRule(rule.threshold, proposals, "both", rule.generator_threshold)

        def select(entities: list[Entity]) -> list[Entity]:
            kept = [e for e in entities if keep.keeps(e)]
            return [e for e in kept if not any(
                o.type == e.type and (o.source == "selector") != (e.source == "selector")
                and o.start < e.end and e.start < o.end and (o.score or 0.0) > (e.score or 0.0) for o in kept)]
        return select

    started = time.process_time()
    lines = ["# The generator's own score and a score-wins overlap rule in the judge (probe, session 28)", "",
             "`python benchmarks/campaign/judge_probe.py " + " ".join(f"--candidates {c}" for c in args.candidates) + "`", "",
             "Strict F1 (%) of each corpus's own types on its stored dev candidates, judged by the shipped selector "
             "(ONNX) with proposals; `rule`: the corpus's shipped selection settings; `gen`: the generator alone. "
             "See the script's docstring for the variants.", ""]
    for named in args.candidates:
        name, _, root = named.partition("=")
        cache = PredictionCache(Path(root))
        columns = ["rule", "gen"] + [f"or {g}" for g in OR_GRID] + [f"and {g}" for g in AND_GRID] \
            + [f"blend {w}" for w in BLEND_GRID] + [f"wins {p}" for p in WINS_GRID]
        rows: dict[str, list[float]] = {}
        for corpus in corpora:
            schema = corpus_schema(corpus)
            pipe.add_schema(schema)
            rule = pipe.selection_rule(schema)
            stored = cache.get(corpus, "own")
            if stored is None:
                raise SystemExit(f"{root} holds no {corpus}.own.jsonl")
            gold = {d.id: d for d in load_corpus(corpus, "dev")}
            gold_docs = [gold[p.id] for p in stored]
            judged = [judge_stored(pipe, p, [e for e in p.entities if e.source != "selector"], schema, propose=True)
                      for p in stored]
            selectors: list[Callable[[list[Entity]], list[Entity]]] = [
                rule.select, lambda es: [e for e in es if e.source != "selector"]]
            selectors += [with_generator(rule, "or", g) for g in OR_GRID]
            selectors += [with_generator(rule, "and", g) for g in AND_GRID]
            selectors += [with_generator(rule, "blend", w) for w in BLEND_GRID]
            selectors += [score_wins(rule, p) for p in WINS_GRID]
            row = []
            for select in selectors:
                predicted = [Document(d.id, d.text, d.language, {}, select(es)) for d, es in zip(gold_docs, judged)]
                tp, fp, fn = np.array([c["all"] for c in per_document_counts(gold_docs, predicted)], float).sum(axis=0)
                row.append(200 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
            rows[corpus] = row
            print(f"{name} {corpus}: " + " ".join(f"{c}={v:.1f}" for c, v in zip(columns, row)), flush=True)
        english = [c for c in corpora if c != "cmeee"]
        lines += [f"## {name}: `{root}`", "", "| corpus | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
        lines += [f"| {c} | " + " | ".join(f"{v:.1f}" for v in row) + " |" for c, row in rows.items()]
        if english:
            lines.append("| English macro | " + " | ".join(
                f"**{np.mean([rows[c][i] for c in english]):.1f}**" for i in range(len(columns))) + " |")
        lines.append("")
    lines.append(f"{time.process_time() - started:.0f} CPU-s on one thread.")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
