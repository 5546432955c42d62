"""A synonym encoder for the normalizer's neighbour step, trained as SapBERT is: names of the same
concept pulled together, names of other concepts pushed apart (in-batch InfoNCE, symmetric).

The training pairs come from what the normalizer's dictionaries already hold: two names that share
an identifier (a vocabulary's synonyms: MeSH, gilda's mappings, PubChem synonyms; and the gold
mentions of the training corpora, which vote for their concept's name). Dictionaries passed here must
be built from training splits only when the encoder is to be scored or tuned on dev.

>>> groups = synonym_groups(dictionaries["Disease"], priority=mention_names)
>>> report = train_synonym_encoder(groups, "packaged:minilm", "out/encoder", steps=400)

The result is a BERT-style directory (``save_pretrained``: weights, tokenizer, ``synonym_encoder.json``)
that :class:`llmner.normalization.encoder.Encoder` loads by path.
"""

from __future__ import annotations

import json
import random
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from llmner.normalization.dictionary import Dictionary

CARD_NAME = "synonym_encoder.json"


def _usable(name: str, max_chars: int) -> bool:
    """Names worth learning from: not too long (IUPAC strings), not mostly digits (registry numbers)."""
    if not 3 <= len(name) <= max_chars:
        return False
    digits = sum(c.isdigit() for c in name)
    return digits <= 0.3 * len(name) and any(c.isalpha() for c in name)


def synonym_groups(dictionary: Dictionary, priority: Iterable[str] = (), max_chars: int = 60,
                   max_names: int = 30) -> dict[str, tuple[list[str], list[str]]]:
    """Per identifier: (its names, those of them in ``priority``: e.g. gold training mentions).

    A name counts for the identifier most of its votes go to; composite identifiers (``A|B``) and
    identifiers with a single usable name (no pair to learn from) are left out. Names that differ
    only by case are one name (the encoder is uncased). At most ``max_names`` names per identifier
    (the priority names first): a compound with 200 PubChem synonyms must not dominate."""
    wanted = {" ".join(p.split()).casefold() for p in priority}
    by_id: dict[str, dict[str, str]] = defaultdict(dict)
    for name, votes in dictionary.names.items():
        if not _usable(name, max_chars):
            continue
        curie, n = min(votes.items(), key=lambda kv: (-kv[1], kv[0]))
        if "|" in curie or 2 * n < sum(votes.values()):
            continue
        by_id[curie].setdefault(name.casefold(), name)
    out = {}
    for curie, names in sorted(by_id.items()):
        if len(names) < 2:
            continue
        ordered = sorted(names, key=lambda k: (k not in wanted, k))[:max_names]
        out[curie] = ([names[k] for k in ordered], [names[k] for k in ordered if k in wanted])
    return out


def sample_pairs(groups: Mapping[str, tuple[Sequence[str], Sequence[str]]], n_pairs: int, seed: int = 0,
                 priority_share: float = 0.5) -> list[tuple[str, str, str]]:
    """(identifier, anchor, positive) pairs, each identifier at most once per pass over them (so a
    batch cut from the list holds distinct concepts, the in-batch negatives). Identifiers with
    priority names come first in each pass and, ``priority_share`` of the time, anchor on one."""
    rng = random.Random(seed)
    first = [c for c, (_, p) in groups.items() if p]
    rest = [c for c, (_, p) in groups.items() if not p]
    out: list[tuple[str, str, str]] = []
    while len(out) < n_pairs and (first or rest):
        rng.shuffle(first)
        rng.shuffle(rest)
        budget = n_pairs - len(out)
        chosen = first[:budget] + rest[: max(0, budget - len(first))]
        rng.shuffle(chosen)
        for curie in chosen:
            names, prio = groups[curie]
            anchor = rng.choice(list(prio)) if prio and rng.random() < priority_share else rng.choice(list(names))
            positive = rng.choice([n for n in names if n != anchor])
            out.append((curie, anchor, positive))
    return out[:n_pairs]


def by_head(pairs: Sequence[tuple[str, str, str]], batch_size: int, seed: int = 0) -> list[tuple[str, str, str]]:
    """The pairs reordered so that a batch holds concepts whose anchors end in the same word (breast
    neoplasms, ovarian neoplasms, ...): in-batch negatives that are hard, as SapBERT mines them. The
    batches (``batch_size`` consecutive pairs) come in random order."""
    rng = random.Random(seed)
    keyed = sorted(pairs, key=lambda p: (p[1].split()[-1].casefold() if p[1].split() else "", rng.random()))
    chunks = [keyed[i : i + batch_size] for i in range(0, len(keyed), batch_size)]
    rng.shuffle(chunks)
    return [p for chunk in chunks for p in chunk]


@dataclass(slots=True)
class SynonymTrainingReport:
    base: str
    steps: int
    batch_size: int
    pairs: int
    learning_rate: float
    scale: float
    max_length: int
    seconds: float
    cpu_seconds: float
    losses: list[float] = field(default_factory=list)   # mean loss per tenth of the run
    sources: list[str] = field(default_factory=list)
    dtype: str = "float32"

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _batches(pairs: Sequence[tuple[str, str, str]], batch_size: int) -> Iterable[list[tuple[str, str, str]]]:
    """Batches of ``batch_size`` pairs in order, an identifier never twice in one (a repeat would be
    a false negative): a pair whose identifier the batch already holds waits for the next batch."""
    batch: list[tuple[str, str, str]] = []
    waiting: list[tuple[str, str, str]] = []
    for pair in pairs:
        if pair[0] in {p[0] for p in batch}:
            waiting.append(pair)
            continue
        batch.append(pair)
        while len(batch) == batch_size:
            yield batch
            batch = []
            for held in list(waiting):
                if len(batch) < batch_size and held[0] not in {p[0] for p in batch}:
                    batch.append(held)
                    waiting.remove(held)
    if len(batch) > 1:
        yield batch


def train_synonym_encoder(pairs: Sequence[tuple[str, str, str]], base: str, out_dir: str | Path, batch_size: int = 64,
                          learning_rate: float = 2e-5, scale: float = 20.0, max_length: int = 25,
                          freeze_embeddings: bool = True, max_seconds: float | None = None, seed: int = 0,
                          dtype: str = "float32", sources: Sequence[str] = (), log_every: int = 0) -> SynonymTrainingReport:
    """Fine-tune ``base`` (``packaged:minilm`` or a BERT-style directory) on ``pairs`` with symmetric
    in-batch InfoNCE over mean-pooled, L2-normalized embeddings (cosine times ``scale``), one pass;
    save it with ``save_pretrained`` to ``out_dir`` (``dtype="float16"`` halves the files; the
    encoder is read back as float32). ``max_seconds`` stops early (the report says how far it got)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from llmner.modeling.selector import quiet_transformers, resolve_encoder

    torch.manual_seed(seed)
    path = resolve_encoder(base)
    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModel.from_pretrained(path)
    model.train()
    if freeze_embeddings:
        for p in model.embeddings.parameters():
            p.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=learning_rate, weight_decay=0.01)
    batches = list(_batches(pairs, batch_size))
    warmup = max(1, len(batches) // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warmup, max(0.0, (len(batches) - s) / max(1, len(batches) - warmup))))

    def embed(texts: list[str]):
        enc = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        hidden = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=-1)

    started, cpu0 = time.perf_counter(), time.process_time()
    losses: list[float] = []
    done = 0
    for step, batch in enumerate(batches):
        if max_seconds is not None and time.perf_counter() - started > max_seconds:
            break
        a = embed([p[1] for p in batch])
        b = embed([p[2] for p in batch])
        sims = a @ b.T * scale
        target = torch.arange(len(batch))
        loss = (torch.nn.functional.cross_entropy(sims, target) + torch.nn.functional.cross_entropy(sims.T, target)) / 2
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        done = step + 1
        if log_every and done % log_every == 0:
            print(f"step {done}/{len(batches)} loss {sum(losses[-log_every:]) / log_every:.4f} "
                  f"{time.perf_counter() - started:.0f}s", flush=True)
    model.eval()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if dtype == "float16":
        model = model.half()
    elif dtype != "float32":
        raise ValueError(f"dtype must be float32 or float16, not {dtype!r}")
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    tenth = max(1, len(losses) // 10)
    report = SynonymTrainingReport(
        base=base, steps=done, batch_size=batch_size, pairs=sum(len(b) for b in batches[:done]), learning_rate=learning_rate,
        scale=scale, max_length=max_length, seconds=round(time.perf_counter() - started, 1),
        cpu_seconds=round(time.process_time() - cpu0, 1),
        losses=[round(sum(losses[i : i + tenth]) / len(losses[i : i + tenth]), 4) for i in range(0, len(losses), tenth)],
        sources=list(sources), dtype=dtype)
    (out / CARD_NAME).write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    return report
