"""Training the reader (``llmner.modeling.reader``): its head on a frozen LM's features.

The LM never changes, so its features are computed once per record and kept on disk
(``<output>/features/``, in parts: a run killed while extracting resumes at the part it was writing).
The statistics that standardize them come from the LM states of the first ``statistics_records``
training records and are stored beside the features, so that features and statistics always agree.

The head then trains for a fixed number of epochs in ``llmner.training.loop`` (the loop the generator
and selector use: schedule, clipping, history, a checkpoint every epoch, resume). Every epoch is scored
on the dev records (strict F1, printed and kept in the history), but nothing is chosen on them: the run
ships its last epoch. The span score from which its spans are kept is chosen on a held-out slice of the
training records (``hold_out_every``, never trained on; ``threshold_table``), recorded in the card.

    reader = train_reader(train_docs, dev_docs, ReaderTrainingConfig(epochs=6), "runs/reader")
    # runs/reader/reader/ (Reader.from_pretrained), history.jsonl, training_card.json, held_out.json
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from llmner.doc import Document, Entity
from llmner.evaluation.scorer import Report, score
from llmner.modeling.reader import FrozenEncoder, Reader, ReaderConfig, TokenFeatures
from llmner.training import checkpoint as ckpt
from llmner.training.loop import LoopSettings, TrainingLoop, seed_everything

FEATURES_DIR = "features"
PART_RECORDS = 2000


@dataclass(slots=True)
class ReaderTrainingConfig:
    reader: ReaderConfig = field(default_factory=ReaderConfig)   # the LM, its layers and the head's sizes
                                                                 # (types: the training records')
    epochs: int = 6
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    max_grad_norm: float = 5.0
    statistics_records: int = 1000
    min_char_count: int = 2          # characters seen fewer times get the unknown-character embedding
    hold_out_every: int = 30         # every n-th training record is held out (threshold choices); 0: none
    seed: int = 0


def split_held_out(docs: Sequence[Document], every: int) -> tuple[list[Document], list[Document]]:
    """(trained on, held out): every ``every``-th record held out (0: none)."""
    if every <= 0:
        return list(docs), []
    return ([d for i, d in enumerate(docs) if i % every != every - 1],
            [d for i, d in enumerate(docs) if i % every == every - 1])


def character_vocabulary(docs: Sequence[Document], min_count: int) -> dict[str, int]:
    counts: dict[str, int] = {}
    for d in docs:
        for ch in d.text:
            counts[ch] = counts.get(ch, 0) + 1
    return {ch: i + 2 for i, ch in enumerate(sorted(c for c, n in counts.items() if n >= min_count))}


def _save_features(path: Path, ids: Sequence[str], features: Sequence[TokenFeatures]) -> None:
    from safetensors.numpy import save_file

    counts = np.array([f.offsets.shape[0] for f in features], dtype=np.int64)
    tmp = path.with_name(path.name + ".tmp")
    save_file({"counts": counts, "offsets": np.concatenate([f.offsets for f in features]).astype(np.int32),
               "features": np.concatenate([f.features for f in features]).astype(np.float16)},
              str(tmp), metadata={"ids": json.dumps(list(ids), ensure_ascii=False)})
    tmp.replace(path)


def _load_features(path: Path, ids: Sequence[str]) -> list[TokenFeatures] | None:
    from safetensors import safe_open
    from safetensors.numpy import load_file

    with safe_open(str(path), "np") as f:
        if json.loads(f.metadata()["ids"]) != list(ids):
            return None
    data = load_file(str(path))
    ends = np.cumsum(data["counts"])
    return [TokenFeatures(data["offsets"][e - c : e], data["features"][e - c : e]) for c, e in zip(data["counts"], ends)]


def cached_features(reader: Reader, docs: Sequence[Document], folder: Path, name: str,
                    log: Callable[[str], None] = print, known: Sequence[TokenFeatures] = ()) -> list[TokenFeatures]:
    """The token features of every record, computed once per part of ``PART_RECORDS`` and kept in
    ``folder`` (a part written for other records is computed again); ``known``: those of the leading
    records, already computed (the statistics' sample), not computed again."""
    folder.mkdir(parents=True, exist_ok=True)
    out: list[TokenFeatures] = []
    start = time.perf_counter()
    for p, s in enumerate(range(0, len(docs), PART_RECORDS)):
        part = docs[s : s + PART_RECORDS]
        ids = [d.id for d in part]
        path = folder / f"{name}-{p:03d}.safetensors"
        found = _load_features(path, ids) if path.is_file() else None
        if found is None:
            found = list(known[s : s + len(part)])
            rest = part[len(found) :]
            for b in range(0, len(rest), 256):
                found += reader.token_features([d.text for d in rest[b : b + 256]])
            _save_features(path, ids, found)
            log(f"{name}: {s + len(part)}/{len(docs)} records read, {time.perf_counter() - start:.0f} s")
        out += found
    return out


def _labels(doc: Document, types: Sequence[str]) -> np.ndarray:
    y = np.zeros((len(doc.text), len(types)), dtype=np.int64)
    for e in doc.entities:
        if e.type in types and 0 <= e.start < e.end <= len(doc.text):
            k = types.index(e.type)
            y[e.start, k] = 1
            y[e.start + 1 : e.end, k] = 2
    return y


def predict(reader: Reader, docs: Sequence[Document], features: Sequence[TokenFeatures],
            batch_size: int = 64) -> list[list[Entity]]:
    """The reader's entities of records whose features are given (``Reader.tag``, head in eval mode)."""
    reader.head.eval()
    out: list[list[Entity]] = []
    for s in range(0, len(docs), batch_size):
        out += reader.tag([d.text for d in docs[s : s + batch_size]], features[s : s + batch_size])
    return out


def score_at(gold: Sequence[Document], predicted: Sequence[Sequence[Entity]], threshold: float = 0.0) -> Report:
    """``llmner.evaluation.scorer.score`` of the spans kept from ``threshold`` (their span score)."""
    kept = [Document(d.id, d.text, d.language, {}, [e for e in found if e.score is None or e.score >= threshold])
            for d, found in zip(gold, predicted, strict=True)]
    return score(gold, kept)


THRESHOLD_GRID = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)


def threshold_table(gold: Sequence[Document], predicted: Sequence[Sequence[Entity]],
                    grid: Sequence[float] = THRESHOLD_GRID) -> list[dict[str, float]]:
    """Strict micro P/R/F1 of the reader's spans kept from each span score of ``grid`` (the reader's
    argmax spans, so 0.0 keeps them all)."""
    rows = []
    for cut in grid:
        c = score_at(gold, predicted, cut).strict
        rows.append({"threshold": cut, "precision": c.precision, "recall": c.recall, "f1": c.f1})
    return rows


def choose_threshold(table: Sequence[dict[str, float]]) -> float:
    """The threshold of the best F1 (the lowest on ties: keep more)."""
    return max(table, key=lambda r: (round(r["f1"], 6), -r["threshold"]))["threshold"]


def train_reader(train_docs: Sequence[Document], dev_docs: Sequence[Document], config: ReaderTrainingConfig,
                 output: str | Path, encoder: FrozenEncoder | None = None, resume: bool = True,
                 log: Callable[[str], None] = print) -> Reader:
    """Train a reader's head on ``train_docs`` (less the held-out slice), score every epoch on
    ``dev_docs``, and save the last epoch's reader to ``<output>/reader``."""
    import torch

    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(config.seed)
    trained, held_out = split_held_out(train_docs, config.hold_out_every)
    types = sorted({e.type for d in trained for e in d.entities})
    encoder = encoder or FrozenEncoder(config.reader.base_model)
    reader = Reader(replace(config.reader, types=types), character_vocabulary(trained, config.min_char_count), encoder=encoder)
    features_dir = out / FEATURES_DIR
    stats_path = features_dir / "statistics.safetensors"
    sample_features: list[TokenFeatures] = []     # the statistics' sample, read once for both
    if stats_path.is_file():
        from safetensors.torch import load_file

        stats = load_file(str(stats_path))
        reader.head.mean.copy_(stats["mean"])
        reader.head.std.copy_(stats["std"])
    else:
        from safetensors.torch import save_file

        t0 = time.perf_counter()
        sample = [d.text for d in trained[: config.statistics_records]]
        pieces, states = reader.window_states(sample)
        reader.set_statistics(states)
        sample_features = reader.features_of(len(sample), pieces, states)
        del states
        features_dir.mkdir(parents=True, exist_ok=True)
        save_file({"mean": reader.head.mean.contiguous(), "std": reader.head.std.contiguous()}, str(stats_path))
        log(f"statistics from {len(sample)} training records, {time.perf_counter() - t0:.0f} s")
    train_features = cached_features(reader, trained, features_dir, "train", log, known=sample_features)
    del sample_features
    dev_features = cached_features(reader, dev_docs, features_dir, "dev", log)
    held_features = cached_features(reader, held_out, features_dir, "held_out", log) if held_out else []

    steps_per_epoch = (len(trained) + config.batch_size - 1) // config.batch_size
    steps = config.epochs * steps_per_epoch
    params = [p for p in reader.head.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    loop = TrainingLoop(optimizer, params, LoopSettings(steps=steps, warmup=int(config.warmup_fraction * steps),
                                                        max_grad_norm=config.max_grad_norm,
                                                        checkpoint_every=steps_per_epoch, log_every=50, name="reader"),
                        out / "checkpoints", reader, lambda path: reader.load_weights(path / "adapter"), progress=False, log=log)
    if resume:
        loop.resume(ckpt.latest_checkpoint(out / "checkpoints"), seed=config.seed)
    labels = [_labels(d, types) for d in trained]

    def order(epoch: int) -> list[int]:
        # A fixed order per epoch derived from the seed: step s always sees the same records, resumed or not.
        index = list(range(len(trained)))
        random.Random(config.seed * 1000 + epoch).shuffle(index)
        return index

    def step_fn(step: int) -> dict[str, Any]:
        reader.head.train()
        epoch, within = divmod(step, steps_per_epoch)
        batch = order(epoch)[within * config.batch_size : (within + 1) * config.batch_size]
        inputs = [reader.char_inputs(trained[i].text, train_features[i]) for i in batch]
        logits = reader.logits(inputs)
        y = torch.full(logits.shape[:-1], -100, dtype=torch.long)
        for j, i in enumerate(batch):
            y[j, : labels[i].shape[0]] = torch.from_numpy(labels[i])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 3), y.reshape(-1), ignore_index=-100)
        loss.backward()
        return {"loss": round(loss.item(), 5), "epoch": epoch + 1}

    def after_step(record: dict[str, Any]) -> None:
        if record["step"] % steps_per_epoch == 0:
            c = score_at(dev_docs, predict(reader, dev_docs, dev_features)).strict
            record["dev_f1"] = round(100 * c.f1, 2)
            log(f"epoch {record['step'] // steps_per_epoch}: dev strict F1 {record['dev_f1']:.1f} "
                f"(P {100 * c.precision:.1f}, R {100 * c.recall:.1f}), {loop.elapsed():.0f} s")

    loop.run(step_fn, after_step=after_step)
    reader.head.eval()
    reader.save_pretrained(out / "reader")
    loop.write_history(out)
    threshold = None
    if held_out:
        predicted = predict(reader, held_out, held_features)
        (out / "held_out.json").write_text(json.dumps(
            [{"id": d.id, "entities": [e.to_dict() for e in p]} for d, p in zip(held_out, predicted)], ensure_ascii=False))
        threshold = choose_threshold(threshold_table(held_out, predicted))
    card = {"config": asdict(config), "types": types, "trained_records": len(trained), "held_out_records": len(held_out),
            "dev_records": len(dev_docs), "steps": loop.state.step, "train_seconds": round(loop.elapsed(), 1),
            "dev_f1_by_epoch": [r["dev_f1"] for r in loop.state.history if "dev_f1" in r],
            "threshold_on_held_out": threshold,
            "fresh_optimizer_steps": loop.state.fresh_optimizer_steps}
    (out / "training_card.json").write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return reader


__all__ = [
    "ReaderTrainingConfig",
    "cached_features",
    "choose_threshold",
    "predict",
    "score_at",
    "split_held_out",
    "threshold_table",
    "train_reader",
]
