"""Experiment: ONE type-conditioned BIO tagger ("Type: definition" [SEP] sentence -> O/B/I per word piece) for the
7 English corpora, trained on the equal-data documents, used to score the generator's stored dev candidates
(span score = geometric mean of P(B) at the first piece, P(I) inside, 1-P(I) after). Compared on the ship
test's 200 leading dev sentences with the generator alone."""
import json
import math
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "benchmarks")); sys.path.insert(0, str(ROOT))
import numpy as np
import torch

torch.set_num_threads(1)
from peer_baseline import (
    PeerConfig,
    TrainDocuments,
    TrainingStats,
    document_chunks,
    outermost_entities,
    training_chunks,
)
from transformers import AutoModelForTokenClassification, AutoTokenizer

from llmner.data_processing.corpora import (
    corpus_schema,
    load_corpus,
    without_test_overlap,
)
from llmner.doc import Document
from llmner.evaluation.scorer import score
from llmner.evaluation.subsets import leading_documents
from llmner.modeling.selector import (
    PACKAGED_MINILM,
    quiet_transformers,
    resolve_encoder,
)

# usage: probe.py OUT_DIR STEPS [TRAINABLE_LAYERS]
OUT = Path(sys.argv[1]); STEPS = int(sys.argv[2]); LAYERS = int(sys.argv[3]) if len(sys.argv) > 3 else 6
EN = ["ncbi_disease", "bc5cdr", "genia", "jnlpba", "bc2gm", "linnaeus", "s800"]
CACHE = ROOT / "benchmarks/campaign/gen-s4/checks/step2000-own200"
MAXLEN = 192; BS = 16; LR = 1e-4 if LAYERS < 6 else 5e-5
rng = random.Random(13); torch.manual_seed(13)
path = resolve_encoder(PACKAGED_MINILM)
with quiet_transformers():
    tok = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForTokenClassification.from_pretrained(str(path), num_labels=3)
for p in model.bert.embeddings.parameters(): p.requires_grad = False
for layer in model.bert.encoder.layer[: 6 - LAYERS]:
    for p in layer.parameters(): p.requires_grad = False

def prefix(schema, t):
    d = schema.definition(t)[:160]
    return f"{t}: {d}" if d else t

def encode(pairs):
    return tok([a for a, _ in pairs], [b for _, b in pairs], truncation="only_second", max_length=MAXLEN,
               padding=True, return_offsets_mapping=True, return_tensors="pt")

def piece_labels(enc, i, spans):
    seq = enc.sequence_ids(i); offs = enc["offset_mapping"][i].tolist(); lab = []
    for j, (a, b) in enumerate(offs):
        if seq[j] != 1 or b <= a: lab.append(-100); continue
        l = 0
        for s, e in spans:
            if a < e and b > s: l = 1 if a <= s else 2; break
        lab.append(l)
    return lab

# ---- training examples: (prefix, chunk text, spans of that type) ----
td = TrainDocuments.read(ROOT / "benchmarks/campaign/trained_documents_s4_step2000.json")
examples = []
for c in EN:
    sch = corpus_schema(c)
    docs = td.select(c, without_test_overlap(load_corpus(c, "train")))
    chunks = training_chunks(docs, tok, PeerConfig(max_train_sentences=None, max_tokens=128), TrainingStats())
    n0 = len(examples)
    for ch in chunks:
        present = {e.type for e in ch.entities}
        absent = [t for t in sch.type_names if t not in present]
        types = sorted(present) + ([rng.choice(absent)] if absent else [])
        for t in types:
            ents = outermost_entities([e for e in ch.entities if e.type == t])
            examples.append((prefix(sch, t), ch.text, [(e.start, e.end) for e in ents]))
    print(f"{c}: {len(chunks)} chunks -> {len(examples) - n0} examples", flush=True)
rng.shuffle(examples)
print(f"{len(examples)} examples; {STEPS} steps x {BS} = {STEPS * BS} ({STEPS * BS / len(examples):.2f} epochs); trainable layers {LAYERS}", flush=True)

params = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.AdamW(params, lr=LR, weight_decay=0.01)
warm = max(1, STEPS // 10)
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm) * max(0.0, (STEPS - s) / max(1, STEPS - warm)))
model.train(); t0 = time.process_time(); losses = []
pool = [examples[i:i + 50 * BS] for i in range(0, len(examples), 50 * BS)]
batches = []
for part in pool:
    part = sorted(part, key=lambda x: len(x[0]) + len(x[1]))
    batches += [part[j:j + BS] for j in range(0, len(part), BS)]
rng.shuffle(batches)
for step in range(STEPS):
    batch = batches[step % len(batches)]
    enc = encode([(a, b) for a, b, _ in batch])
    labels = torch.tensor([piece_labels(enc, i, s) for i, (_, _, s) in enumerate(batch)])
    out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], token_type_ids=enc["token_type_ids"], labels=labels)
    opt.zero_grad(); out.loss.backward(); torch.nn.utils.clip_grad_norm_(params, 1.0); opt.step(); sched.step()
    losses.append(float(out.loss.detach()))
    if (step + 1) % 100 == 0:
        print(f"step {step + 1} loss {np.mean(losses[-100:]):.4f} cpu {time.process_time() - t0:.0f} s", flush=True)
train_cpu = time.process_time() - t0
model.eval()
OUT.mkdir(parents=True, exist_ok=True)

# ---- dev: rescore the generator's stored candidates ----
def span_score(probs, offs, seq, s, e):
    idx = [j for j, (a, b) in enumerate(offs) if seq[j] == 1 and b > a and a < e and b > s]
    if not idx: return 0.0
    lp = [math.log(max(probs[idx[0]][1], 1e-9))] + [math.log(max(probs[j][2], 1e-9)) for j in idx[1:]]
    nxt = idx[-1] + 1
    if nxt < len(offs) and seq[nxt] == 1 and offs[nxt][1] > offs[nxt][0]:
        lp.append(math.log(max(1 - probs[nxt][2], 1e-9)))
    return math.exp(sum(lp) / len(lp))

def f1(g, p): return score(g, p).strict.f1 * 100
res = {"train_cpu_s": train_cpu, "steps": STEPS, "layers": LAYERS, "examples": len(examples), "corpora": {}}
grid = [0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
with torch.inference_mode():
    for c in EN:
        sch = corpus_schema(c)
        docs, _ = leading_documents(load_corpus(c, "dev"), 200)
        llm = {d["id"]: Document.from_dict(d, validate=False) for d in map(json.loads, (CACHE / f"{c}.own.jsonl").open())}
        scored = []
        for d in docs:
            cand = llm[d.id]
            chunks = document_chunks(Document(d.id, d.text, d.language, {}, []), tok, 128)
            ents = []
            groups = {}
            for e in cand.entities:
                ch = next((k for k in chunks if k.start <= e.start and e.end <= k.end), None)
                if ch is None: ents.append((e, 1.0)); continue
                groups.setdefault((ch.start, e.type), (ch, [])) [1].append(e)
            keys = list(groups)
            for b in range(0, len(keys), 16):
                part = keys[b:b + 16]
                enc = encode([(prefix(sch, t), groups[(s, t)][0].text) for s, t in part])
                probs = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], token_type_ids=enc["token_type_ids"]).logits.softmax(-1).tolist()
                for i, key in enumerate(part):
                    ch, es = groups[key]
                    offs = enc["offset_mapping"][i].tolist(); seq = enc.sequence_ids(i)
                    for e in es:
                        ents.append((e, span_score(probs[i], offs, seq, e.start - ch.start, e.end - ch.start)))
            scored.append((cand, ents))
        row = {"generator": f1(docs, [c_ for c_, _ in scored])}
        for th in grid:
            row[f"{th:g}"] = f1(docs, [replace(c_, entities=[e for e, s in es if s >= th]) for c_, es in scored])
        res["corpora"][c] = row
        print(c, " ".join(f"{k} {v:.1f}" for k, v in row.items()), flush=True)
(OUT / "result.json").write_text(json.dumps(res, indent=1))
macro = {k: np.mean([r[k] for r in res["corpora"].values()]) for k in next(iter(res["corpora"].values()))}
print("macro", " ".join(f"{k} {v:.1f}" for k, v in macro.items()), f"train cpu {train_cpu:.0f} s")
