"""Probe: would a token classifier's support, used as a judge of the generator's candidates, raise strict F1?
Generator-only dev predictions (ship test caches, 200 leading dev sentences) against the equal-data peers."""
import json
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "benchmarks")); sys.path.insert(0, str(ROOT))
import torch

torch.set_num_threads(1)
from peer_baseline import load_trained, predict_documents

from llmner.data_processing.corpora import load_corpus
from llmner.doc import Document
from llmner.evaluation.scorer import score
from llmner.evaluation.subsets import leading_documents

CACHE = ROOT / "benchmarks/campaign/gen-s4/checks/step2000-own200"
def f1(gold, pred): return score(gold, pred).strict.f1 * 100
def overl(a, b): return a.start < b.end and b.start < a.end
PEERS = sys.argv[1]   # the directory peer_baseline.py --output wrote (one model per corpus)
for corpus in sys.argv[2:]:
    docs, _ = leading_documents(load_corpus(corpus, "dev"), 200)
    llm = {d["id"]: Document.from_dict(d, validate=False) for d in map(json.loads, (CACHE / f"{corpus}.own.jsonl").open())}
    llm = [llm[d.id] for d in docs]
    model, tok = load_trained(f"{PEERS}/{corpus}")
    peer = predict_documents(model, tok, [Document(d.id, d.text, d.language, {}, []) for d in docs]).predictions
    inter, over, union = [], [], []
    for l, p in zip(llm, peer):
        pk = {(e.start, e.end, e.type) for e in p.entities}
        lk = {(e.start, e.end, e.type) for e in l.entities}
        inter.append(replace(l, entities=[e for e in l.entities if (e.start, e.end, e.type) in pk]))
        over.append(replace(l, entities=[e for e in l.entities if any(overl(e, q) and q.type == e.type for q in p.entities)]))
        union.append(replace(l, entities=list(l.entities) + [e for e in p.entities if (e.start, e.end, e.type) not in lk
                                                             and not any(overl(e, q) for q in l.entities)]))
    print(f"{corpus}: llm {f1(docs, llm):.1f} peer {f1(docs, peer):.1f} exact-agree {f1(docs, inter):.1f} "
          f"overlap-agree {f1(docs, over):.1f} union(non-overlapping peer added) {f1(docs, union):.1f}", flush=True)
