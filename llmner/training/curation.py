"""Training-data curation: BioSelectTune's hybrid superfiltering (``llmner curate``).

A weak model that shares the generator's tokenizer (default: the base model without adapter)
scores every example by its Instruction-Following Difficulty

    IFD = PPL(answer | instruction) / PPL(answer)

where the answer is the target token sequence the generator is trained on (tagged text + end of
turn). PPL(answer | instruction) scores every answer token after the full prompt; PPL(answer)
scores the answer alone, its first token unscored (nothing precedes it), as in Superfiltering.
IFD >= 1 means the instruction does not help (noise or misalignment): those examples are dropped.
Of the remaining entity-containing examples, the top ``keep_percent`` % by IFD (the hardest, most
informative) are kept; every entity-free example is kept (they teach the model not to invent tags).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llmner.errors import ConfigError
from llmner.prompts import PromptBuilder, PromptConfig
from llmner.training.examples import (
    ExampleConfig,
    ExampleStats,
    TextExample,
    text_examples,
    tokenize_example,
)

QUANTILES = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)


@dataclass(frozen=True, slots=True)
class ScoredExample:
    id: str
    corpus: str
    doc_id: str
    chunk_index: int
    has_entities: bool
    nll_conditional: float | None       # mean answer-token NLL after the prompt
    nll_answer: float | None            # mean answer-token NLL of the answer alone
    answer_tokens: int

    @property
    def ifd(self) -> float | None:
        if self.nll_conditional is None or self.nll_answer is None:
            return None
        return math.exp(self.nll_conditional - self.nll_answer)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ifd"] = self.ifd
        out["ppl_conditional"] = None if self.nll_conditional is None else math.exp(self.nll_conditional)
        out["ppl_answer"] = None if self.nll_answer is None else math.exp(self.nll_answer)
        return out


@dataclass(slots=True)
class Selection:
    kept: list[ScoredExample]
    dropped_ifd_ge_1: list[ScoredExample]
    dropped_below_top: list[ScoredExample]
    unscorable: list[ScoredExample]
    summary: dict[str, Any] = field(default_factory=dict)


def score_examples(model: Any, tokenizer: Any, examples: Sequence[tuple[TextExample, Any]], batch_size: int = 8,
                   device: Any = None, progress: Callable[[int], None] | None = None) -> list[ScoredExample]:
    """IFD terms for (text example, tokenized example) pairs, batched (longest first, order kept)."""
    import torch

    device = device if device is not None else next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i][1]))
    conditional: dict[int, tuple[float | None, int]] = {}
    answer_only: dict[int, tuple[float | None, int]] = {}
    model.eval()
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            tok = [examples[i][1] for i in idx]
            # Conditional: the full sequence, answer tokens scored.
            cond = _mean_nll(model, [list(t.input_ids) for t in tok], [t.prompt_length for t in tok], pad_id, device)
            # Unconditional: the answer alone; position 0 has no context and is not scored.
            alone = _mean_nll(model, [list(t.input_ids[t.prompt_length :]) for t in tok], [0] * len(tok), pad_id, device)
            for j, i in enumerate(idx):
                conditional[i] = cond[j]
                answer_only[i] = alone[j]
            if progress is not None:
                progress(len(idx))
    out = []
    for i, (text_ex, tok_ex) in enumerate(examples):
        out.append(ScoredExample(
            id=text_ex.id, corpus=text_ex.corpus, doc_id=text_ex.doc_id, chunk_index=text_ex.chunk_index,
            has_entities=text_ex.has_entities, nll_conditional=conditional[i][0], nll_answer=answer_only[i][0],
            answer_tokens=tok_ex.target_tokens,
        ))
    return out


def _mean_nll(model: Any, sequences: list[list[int]], first_scored: list[int], pad_id: int,
              device: Any) -> list[tuple[float | None, int]]:
    """Per sequence: mean NLL of tokens at positions >= max(first_scored, 1) (a token is predicted
    from the ones before it), and how many tokens that was; (None, 0) when none is scorable."""
    import torch

    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(sequences), width), dtype=torch.long)
    scored = torch.zeros((len(sequences), width), dtype=torch.bool)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        attention[row, : len(seq)] = 1
        scored[row, max(first_scored[row], 1) : len(seq)] = True
    logits = model(input_ids=ids.to(device), attention_mask=attention.to(device)).logits.float()
    logprobs = torch.log_softmax(logits[:, :-1, :], dim=-1)
    token_lp = logprobs.gather(-1, ids[:, 1:].to(device).unsqueeze(-1)).squeeze(-1)
    mask = scored[:, 1:].to(device)
    sums = -(token_lp * mask).sum(dim=1)
    counts = mask.sum(dim=1)
    return [(float(sums[r] / counts[r]) if counts[r] > 0 else None, int(counts[r])) for r in range(len(sequences))]


def select(scored: Sequence[ScoredExample], keep_percent: float, per_corpus: bool = True) -> Selection:
    """Drop entity examples with IFD >= 1, keep the top ``keep_percent`` % of the rest by IFD (highest
    first), keep every entity-free example.

    ``per_corpus`` ranks each corpus's examples separately, so every corpus keeps the same share and
    the training mixture stays what the sampling temperature makes it. Ranked as one pool, IFD
    follows the corpus more than the example: on 60 documents of each of the 8 corpora, the pooled
    top 50 % kept 4 of BC2GM's 22 entity examples and 32 of S800's 186, but 239 of BC5CDR's 396.
    """
    if not 0 < keep_percent <= 100:
        raise ConfigError(f"keep_percent must be in (0, 100], got {keep_percent}")
    entity = [s for s in scored if s.has_entities]
    entity_free = [s for s in scored if not s.has_entities]
    unscorable = [s for s in entity if s.ifd is None]
    dropped = [s for s in entity if s.ifd is not None and s.ifd >= 1.0]
    valid = [s for s in entity if s.ifd is not None and s.ifd < 1.0]
    groups: dict[str, list[ScoredExample]] = {}
    for s in valid:
        groups.setdefault(s.corpus if per_corpus else "", []).append(s)
    top: list[ScoredExample] = []
    rest: list[ScoredExample] = []
    for group in groups.values():
        ranked = sorted(group, key=lambda s: (-s.ifd, s.id))  # type: ignore[operator]
        k = math.ceil(len(ranked) * keep_percent / 100.0)
        top += ranked[:k]
        rest += ranked[k:]
    kept_ids = {s.id for s in top} | {s.id for s in entity_free}
    kept = [s for s in scored if s.id in kept_ids]
    selection = Selection(kept, dropped, rest, unscorable)
    selection.summary = summarize(scored, selection, keep_percent)
    selection.summary["per_corpus_ranking"] = per_corpus
    return selection


def read_scores(path: str | Path) -> list[ScoredExample]:
    """The scored examples of an earlier run (its ``*.scores.jsonl``), to select again without scoring."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"scores file not found: {p}")
    names = [f.name for f in dataclasses.fields(ScoredExample)]
    out = []
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            out.append(ScoredExample(**{k: row[k] for k in names}))
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ConfigError(f"scores file {p} line {n}: expected a JSON object with {', '.join(names)}") from None
    return out


def summarize(scored: Sequence[ScoredExample], selection: Selection, keep_percent: float) -> dict[str, Any]:
    entity = [s.ifd for s in scored if s.has_entities and s.ifd is not None]
    free = [s.ifd for s in scored if not s.has_entities and s.ifd is not None]
    kept_entity = [s for s in selection.kept if s.has_entities]
    per_corpus: dict[str, dict[str, int]] = {}
    for s in scored:
        row = per_corpus.setdefault(s.corpus, {"examples": 0, "with_entities": 0, "kept": 0})
        row["examples"] += 1
        row["with_entities"] += int(s.has_entities)
    for s in selection.kept:
        per_corpus[s.corpus]["kept"] += 1
    return {
        "keep_percent": keep_percent,
        "examples": len(scored),
        "with_entities": sum(s.has_entities for s in scored),
        "entity_free": sum(not s.has_entities for s in scored),
        "dropped_ifd_ge_1": len(selection.dropped_ifd_ge_1),
        "dropped_below_top_k": len(selection.dropped_below_top),
        "unscorable": len(selection.unscorable),
        "kept": len(selection.kept),
        "kept_with_entities": len(kept_entity),
        "kept_entity_free": len(selection.kept) - len(kept_entity),
        "ifd_threshold": min((s.ifd for s in kept_entity if s.ifd is not None), default=None),
        "ifd_quantiles_with_entities": quantiles(entity),
        "ifd_quantiles_entity_free": quantiles(free),
        "per_corpus": per_corpus,
    }


def quantiles(values: Sequence[float], points: Sequence[float] = QUANTILES) -> dict[str, float] | None:
    """Linear-interpolation quantiles (numpy's default) keyed "q05" etc.; None for no values."""
    if not values:
        return None
    data = sorted(values)
    out = {}
    for q in points:
        pos = q * (len(data) - 1)
        lo, hi = math.floor(pos), math.ceil(pos)
        out[f"q{round(q * 100):02d}"] = data[lo] + (data[hi] - data[lo]) * (pos - lo)
    return out


@dataclass(slots=True)
class CurationConfig:
    corpora: list[str] = field(default_factory=list)
    output: str = ""                            # the selected subset (JSONL)
    split: str = "train"
    scorer: str = "smollm2-135m-instruct"       # weak model sharing the generator's tokenizer
    keep_percent: float = 50.0
    batch_size: int = 8
    max_length: int = 512
    chunk_max_tokens: int = 256
    codec: str = "inline"
    definitions: str = "compact"
    max_documents: int | None = None
    device: str = "auto"
    per_corpus: bool = True                     # rank IFD within each corpus (see ``select``)
    from_scores: str | None = None              # select again from an earlier run's scores file, no scoring

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class CurationResult:
    selection: Selection
    subset_path: Path
    scores_path: Path
    summary_path: Path


def curate(config: CurationConfig, corpora: Sequence[Any] | None = None, scorer: tuple[Any, Any] | None = None,
           progress: bool = True, log: Callable[[str], None] = print) -> CurationResult:
    """Score every example of the corpora, select, and write subset + scores + summary next to each other.

    ``corpora``: ``CorpusData`` items (from ``llmner.training.generator``) given in memory, else read
    from the registry; ``scorer``: an in-memory (model, tokenizer), else loaded from ``config.scorer``.
    """
    if not config.output:
        raise ConfigError("no output file given (--output FILE.jsonl)")
    if config.from_scores:
        scored = [s for s in read_scores(config.from_scores) if not config.corpora or s.corpus in config.corpora]
        if not scored:
            raise ConfigError(f"{config.from_scores} holds no scored example of {', '.join(config.corpora) or 'any corpus'}")
        log(f"{len(scored)} scored examples read from {config.from_scores}")
        return _write_selection(config, scored, log)
    from llmner.codecs import get_codec
    from llmner.training.generator import GeneratorTrainingConfig, load_corpora

    if corpora is None:
        corpora = load_corpora(GeneratorTrainingConfig(corpora=list(config.corpora), split=config.split,
                                                       max_documents=config.max_documents, output="-"))
    if scorer is None:
        import torch

        from llmner.modeling.generator import load_base

        scorer = load_base(config.scorer, device=None if config.device == "auto" else config.device, dtype=torch.float32)
    model, tokenizer = scorer
    codec = get_codec(config.codec)
    builder = PromptBuilder(PromptConfig(codec=config.codec, definitions=config.definitions))  # type: ignore[arg-type]
    # Every example, entity-free ones included: training applies its own entity-free ratio afterwards.
    example_config = ExampleConfig(entity_free_ratio=-1.0, max_length=config.max_length,
                                   chunk_max_tokens=config.chunk_max_tokens)
    pairs = []
    for corpus in corpora:
        stats = ExampleStats()
        texts = text_examples(corpus.documents, corpus.name, codec, example_config, stats, tokenizer)
        parts = builder.split(tokenizer, "", corpus.schema)
        for text_ex in texts:
            tokenized = tokenize_example(text_ex, tokenizer, builder, corpus.schema, parts)
            if len(tokenized) > config.max_length:   # skipped exactly as training skips it
                stats.skipped_too_long += 1
                continue
            pairs.append((text_ex, tokenized))
        log(f"{corpus.name}: {len(texts)} examples, {stats.skipped_too_long} skipped over {config.max_length} tokens")
    scored = _score_with_progress(model, tokenizer, pairs, config.batch_size, progress)
    return _write_selection(config, scored, log)


def _write_selection(config: CurationConfig, scored: Sequence[ScoredExample], log: Callable[[str], None]) -> CurationResult:
    selection = select(scored, config.keep_percent, config.per_corpus)
    selection.summary["config"] = config.to_dict()
    subset_path = Path(config.output)
    subset_path.parent.mkdir(parents=True, exist_ok=True)
    stem = subset_path.name.removesuffix(".jsonl")
    scores_path = subset_path.with_name(stem + ".scores.jsonl")
    summary_path = subset_path.with_name(stem + ".summary.json")
    _write_jsonl(subset_path, (s.to_dict() for s in selection.kept))
    _write_jsonl(scores_path, (s.to_dict() for s in scored))
    summary_path.write_text(json.dumps(selection.summary, indent=2) + "\n", encoding="utf-8")
    log(format_summary(selection.summary))
    return CurationResult(selection, subset_path, scores_path, summary_path)


def format_summary(summary: Mapping[str, Any]) -> str:
    lines = [
        f"examples {summary['examples']}: {summary['with_entities']} with entities, {summary['entity_free']} entity-free",
        (f"dropped IFD >= 1: {summary['dropped_ifd_ge_1']}; below top {summary['keep_percent']}%: "
         f"{summary['dropped_below_top_k']}; unscorable: {summary['unscorable']}"),
        (f"kept {summary['kept']}: {summary['kept_with_entities']} with entities (IFD >= {summary['ifd_threshold']}), "
         f"{summary['kept_entity_free']} entity-free"),
    ]
    for label, key in (("with entities", "ifd_quantiles_with_entities"), ("entity-free", "ifd_quantiles_entity_free")):
        q = summary.get(key)
        if q:
            lines.append(f"IFD quantiles ({label}): " + "  ".join(f"{k} {v:.3f}" for k, v in q.items()))
    return "\n".join(lines)


def _score_with_progress(model: Any, tokenizer: Any, pairs: Sequence[tuple[TextExample, Any]], batch_size: int,
                         progress: bool) -> list[ScoredExample]:
    if not progress:
        return score_examples(model, tokenizer, pairs, batch_size)
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    with Progress(TextColumn("[bold]curate: IFD scoring"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()) as bar:
        task = bar.add_task("score", total=len(pairs))
        return score_examples(model, tokenizer, pairs, batch_size, progress=lambda n: bar.advance(task, n))


def _write_jsonl(path: Path, rows: Any) -> None:
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
