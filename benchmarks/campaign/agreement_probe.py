"""Probe (dev only, session 40): does a proposer's agreement with a generator candidate say which to keep?

On the stored dev candidates (gen-s4 step2000-calibration), under ``BUNDLE``'s proposer for ``CORPUS``, the
rule ``SelectionRule(T, P, "both", None, T)`` is scored as it is, and again with the generator's candidates
that the proposer did not propose (same span and type, from proposer span score r) kept only from a higher
selector score tu. Evidence: the share of 200 document resamples in which the variant chosen in bag beats
the rule out of bag.

    python benchmarks/campaign/agreement_probe.py BUNDLE CORPUS T P
"""
import sys
from pathlib import Path

import numpy as np
import torch

torch.set_num_threads(1)
from llmner.data_processing.corpora import corpus_schema, load_corpus
from llmner.decoding.selection import SelectionRule
from llmner.doc import Document
from llmner.evaluation.bootstrap import per_document_counts
from llmner.evaluation.predict import PredictionCache
from llmner.evaluation.rescore import chunk_candidates, judge_stored
from llmner.pipeline import Pipeline, PipelineConfig

bundle = sys.argv[1]; corpus = sys.argv[2] if len(sys.argv) > 2 else "ncbi_disease"
pipe = Pipeline.from_bundle(bundle, PipelineConfig(selector_backend="onnx"))
pipe.thresholds, pipe.proposal_thresholds, pipe.proposal_overlaps = {}, {}, {}
schema = corpus_schema(corpus); pipe.add_schema(schema)
docs = {d.id: d for d in load_corpus(corpus, "dev")}
pred = PredictionCache(Path("benchmarks/campaign/gen-s4/checks/step2000-calibration")).get(corpus, "own")
gold, judged, agree = [], [], []
for p in pred:
    doc = docs[p.id]; own = [e for e in p.entities if e.source == "generator"]
    js = judge_stored(pipe, doc, own, schema, propose=True)
    parts = chunk_candidates(pipe, doc, own, schema)
    spans = {}
    for part, ents in zip(parts, pipe.proposer_for(schema).reader.read([pt.chunk.text for pt in parts])):
        for e in ents:
            k = (e.start + part.chunk.start, e.end + part.chunk.start, e.type)
            spans[k] = max(spans.get(k, 0.0), e.score or 0.0)
    gold.append(doc); judged.append(js); agree.append(spans)
def counts(rule_fn):
    predicted = [Document(d.id, d.text, d.language, {}, rule_fn(js, ag)) for d, js, ag in zip(gold, judged, agree)]
    return np.array([c["all"] for c in per_document_counts(gold, predicted)], dtype=np.float64)
def f1(c):
    tp, fp, fn = c[:, 0].sum(), c[:, 1].sum(), c[:, 2].sum()
    return 200 * tp / (2 * tp + fp + fn)
T=float(sys.argv[3]); P=float(sys.argv[4])
base = SelectionRule(T, P, "both", None, T)
c0 = counts(lambda js, ag: base.select(js)); print("chosen rule", round(f1(c0), 2))
res = {}
for r in (0.3, 0.7):
    for tc in (T,):
        for tu in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95):
            def fn(js, ag, r=r, tc=tc, tu=tu):
                out = []
                for e in js:
                    if e.source == "generator" and e.score is not None:
                        t = tc if ag.get((e.start, e.end, e.type), -1) >= r else tu
                        if e.score < t: continue
                    out.append(e)
                return base.select(out)
            c = counts(fn); res[(r, tc, tu)] = c
            print(r, tc, tu, round(f1(c), 2), flush=True)
best = max(res, key=lambda k: f1(res[k])); print("best", best, round(f1(res[best]), 2))
# out-of-bag evidence: choose on a resample, compare out of bag with the chosen rule c0
rng = np.random.default_rng(0); n = len(gold); wins = 0; gains = []
for _ in range(200):
    idx = rng.integers(0, n, n); oob = np.setdiff1d(np.arange(n), idx)
    if len(oob) == 0: continue
    b = max(res, key=lambda k: f1(res[k][idx]))
    g = f1(res[b][oob]) - f1(c0[oob]); gains.append(g); wins += g > 0
print("evidence", wins / len(gains), "mean gain", np.mean(gains))
