"""Batched greedy decoding in three modes: ``free``, ``constrained`` and ``speculative``.

One loop serves all modes. Each pass feeds, per row, the token chosen last (not yet in the KV cache)
followed by up to ``draft_tokens`` draft tokens; the logits at every fed position are checked in order:
the chosen token at a position is the (constrained) argmax there; a draft token is accepted while it
equals that choice, and the first disagreeing choice becomes the next pass's first token. ``free`` and
``constrained`` simply never draft (one token per pass), so ``speculative`` returns exactly what
``constrained`` returns, up to fp32 near-ties between differently shaped forward passes.

Draft length: at most ``draft_tokens`` per row and ``draft_budget`` per pass over the batch.
Drafts: the pending marker finished (a close when it can only be a close, else an open of the type
this row opened last), then the rest of the escaped source, then closes of open tags -- tokenized with
the tokenizer itself (its canonical split is what the model tends to write).

Batches with different accepted lengths per row (the approach): the cache is one [batch, columns]
grid with a 2-D attention mask. A pass appends ``1 + max draft`` columns to every row; each row
marks the columns it did not accept (rejected drafts, right padding inside the block) as holes (mask
0), and position ids count only a row's real tokens, so holes are invisible to the model. Columns that
are holes in every row are cropped off the end (``DynamicCache.crop``); at batch 1 that leaves no holes
at all. Finished rows are dropped from the batch (``batch_select_indices``).

The prompt prefix shared by all chunks of a schema (``PromptBuilder.split``) is tokenized and run once;
its KV is expanded to every batch, and each row's own part (text + suffix) is left-padded after it (the
padding becomes holes as well).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from llmner.decoding.constraint import CopyConstraint, CopyState
from llmner.decoding.vocab import TokenVocab, vocab_for
from llmner.errors import ConfigError

Mode = Literal["free", "constrained", "speculative"]
MODES: tuple[str, ...] = ("free", "constrained", "speculative")


@dataclass(frozen=True, slots=True)
class DecodeConfig:
    # Token budget per row: max_new_tokens if set, else budget_factor * source tokens + budget_extra.
    # An untuned model in free mode may ramble to the budget; constrained modes stop when the copy is done.
    max_new_tokens: int | None = None
    budget_factor: float = 2.0
    budget_extra: int = 32
    draft_tokens: int = 16          # per row; long drafts waste compute on rejected tails (FIELD_NOTES: 16 > unlimited)
    draft_budget: int = 64          # draft tokens per pass over the whole batch: a pass costs about its
                                    # batch x width tokens, so wide batches draft shorter (8 rows -> 8 each)
    max_depth: int = 4              # open tags at once (GENIA nests up to 3-4)
    tags_inside_words: bool = False # allow markers between two letters/digits (no gold mention needs it)
    reuse_prefix_cache: bool = True


@dataclass(slots=True)
class DecodeOutput:
    text: str                       # the generated string (EOS excluded)
    token_ids: list[int]
    forward_passes: int             # passes this row took part in (its prompt prefill included)
    output_tokens: int
    finished: bool = True           # False: the token budget ran out (constrained modes then copy the rest)


@dataclass(slots=True)
class _Row:
    index: int
    budget: int
    constraint: CopyConstraint | None
    state: CopyState | None
    out: list[int] = field(default_factory=list)
    pending: int = -1
    passes: int = 0
    done: bool = False
    finished: bool = True
    guess_type: int | None = None


def eos_token_ids(model: Any, tokenizer: Any) -> tuple[int, ...]:
    ids: list[int] = []
    gen = getattr(model, "generation_config", None)
    eos = getattr(gen, "eos_token_id", None) if gen is not None else None
    for value in (eos if isinstance(eos, (list, tuple)) else [eos]) + [tokenizer.eos_token_id]:
        if value is not None and int(value) not in ids:
            ids.append(int(value))
    if not ids:
        raise ConfigError("the model and tokenizer define no EOS token; generation could never stop")
    return tuple(ids)


class Decoder:
    """Holds a model, its tokenizer's precomputed vocabulary and the KV caches of prompt prefixes."""

    def __init__(self, model: Any, tokenizer: Any, config: DecodeConfig | None = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.config = config or DecodeConfig()
        self.vocab: TokenVocab = vocab_for(tokenizer, eos_token_ids(model, tokenizer))
        self.device = next(model.parameters()).device
        self._prefixes: dict[str, tuple[list[int], list[tuple[torch.Tensor, torch.Tensor]]]] = {}
        # Constrained modes score only the allowed tokens: run the decoder stack, then the allowed rows
        # of the output layer (a plain Linear without bias; anything else falls back to full logits).
        head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        stack = model.get_decoder() if hasattr(model, "get_decoder") else None
        usable = isinstance(head, torch.nn.Linear) and head.bias is None and stack is not None
        self._stack = stack if usable else None
        self._head = head.weight if usable else None

    # -- tokenization -----------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _draft_ids(self, data: bytes, limit: int) -> list[int]:
        if not data or limit <= 0:
            return []
        try:
            ids = self.encode(data.decode("utf-8"))
            if b"".join(self.vocab.token_bytes[t] or b"\x00" for t in ids) == data:
                return ids[:limit]
        except UnicodeDecodeError:
            pass
        # Not valid UTF-8 (the last token ended inside a character) or a lossy tokenizer: longest match.
        ids, i, root = [], 0, self.vocab.root
        while i < len(data) and len(ids) < limit:
            node, j, best = root, i, None
            while j < len(data) and data[j] in node.children:
                node = node.children[data[j]]
                j += 1
                if node.ids:
                    best = (node.ids[0], j)
            if best is None:
                break
            ids.append(best[0])
            i = best[1]
        return ids

    # -- prefix KV --------------------------------------------------------------------------------
    def _prefix_kv(self, prefix: str) -> tuple[list[int], list[tuple[torch.Tensor, torch.Tensor]]]:
        hit = self._prefixes.get(prefix)
        if hit is None:
            from transformers import DynamicCache

            ids = self.encode(prefix)
            cache = DynamicCache(config=self.model.config)
            if ids:
                with torch.inference_mode():
                    self.model(input_ids=torch.tensor([ids], device=self.device), past_key_values=cache,
                               use_cache=True, logits_to_keep=1)
            kv = [(layer.keys, layer.values) for layer in cache.layers] if ids else []
            hit = (ids, kv)
            if len(self._prefixes) > 16:  # a few schemas at a time; drop the oldest
                self._prefixes.pop(next(iter(self._prefixes)))
            self._prefixes[prefix] = hit
        return hit

    # -- decoding ---------------------------------------------------------------------------------
    def decode(
        self,
        prefix: str,
        prompts: Sequence[str],
        sources: Sequence[str],
        types: Sequence[Sequence[str]],
        mode: Mode = "speculative",
    ) -> list[DecodeOutput]:
        """Greedy outputs for rows whose prompt is ``prefix + prompts[i]`` and whose source text is
        ``sources[i]`` (tags allowed: ``types[i]``)."""
        if mode not in MODES:
            raise ConfigError(f"unknown decoding mode {mode!r} (expected one of {', '.join(MODES)})")
        if not (len(prompts) == len(sources) == len(types)):
            raise ConfigError("decode: prompts, sources and types must have the same length")
        if not prompts:
            return []
        with torch.inference_mode():
            return self._decode(prefix, list(prompts), list(sources), list(types), mode)

    def _decode(self, prefix: str, prompts: list[str], sources: list[str], types: list[Sequence[str]],
                mode: str) -> list[DecodeOutput]:
        from transformers import DynamicCache

        cfg = self.config
        rows: list[_Row] = []
        for i, (src, tps) in enumerate(zip(sources, types)):
            budget = cfg.max_new_tokens or int(cfg.budget_factor * len(self.encode(src)) + cfg.budget_extra)
            constraint = CopyConstraint(src, tps, self.vocab, cfg.max_depth, cfg.tags_inside_words) if mode != "free" else None
            rows.append(_Row(i, max(budget, 1), constraint, constraint.start() if constraint else None))

        # Prompt: shared prefix KV (expanded) + each row's own part, left-padded.
        prompt_ids = [self.encode(p) for p in prompts]
        batch = len(rows)
        cache = DynamicCache(config=self.model.config)
        if cfg.reuse_prefix_cache:
            prefix_ids, kv = self._prefix_kv(prefix)
            for layer, (k, v) in enumerate(kv):
                cache.update(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1), layer)
            n_prefix = len(prefix_ids)
        else:
            prefix_ids = self.encode(prefix)
            prompt_ids = [prefix_ids + ids for ids in prompt_ids]
            n_prefix = 0
        width = max(len(ids) for ids in prompt_ids)
        pad = self.vocab.pad_id
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in prompt_ids], device=self.device)
        new_mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in prompt_ids], device=self.device)
        mask = torch.cat([torch.ones(batch, n_prefix, dtype=torch.long, device=self.device), new_mask], dim=1)
        positions = (n_prefix + new_mask.cumsum(1) - 1).clamp(min=0)
        next_pos = torch.tensor([n_prefix + len(ids) for ids in prompt_ids], device=self.device)
        hidden = mode != "free" and self._stack is not None
        head = self._head if hidden else None
        logits = self._forward(input_ids, mask, positions, cache, keep=1, hidden=hidden)
        active = list(range(batch))
        for b, row in enumerate(rows):
            row.passes += 1
            self._verify(row, logits[b], [], head)

        while True:
            keep = [b for b, r in enumerate(active) if not rows[r].done]
            if len(keep) < len(active):
                if not keep:
                    break
                index = torch.tensor(keep, device=self.device)
                cache.batch_select_indices(index)
                mask, next_pos = mask[index], next_pos[index]
                active = [active[b] for b in keep]
            per_row = max(2, min(cfg.draft_tokens, cfg.draft_budget // len(active)))
            drafts = [self._draft(rows[r], per_row) if mode == "speculative" else [] for r in active]
            width = 1 + max(len(d) for d in drafts)
            block = [[rows[r].pending] + d + [pad] * (width - 1 - len(d)) for r, d in zip(active, drafts)]
            new_mask = torch.tensor([[1] * (1 + len(d)) + [0] * (width - 1 - len(d)) for d in drafts], device=self.device)
            positions = next_pos[:, None] + torch.arange(width, device=self.device)[None, :]
            mask = torch.cat([mask, new_mask], dim=1)
            logits = self._forward(torch.tensor(block, device=self.device), mask, positions, cache, keep=width,
                                   hidden=hidden)
            accepted = []
            for b, (r, d) in enumerate(zip(active, drafts)):
                rows[r].passes += 1
                accepted.append(self._verify(rows[r], logits[b], d, head))
            fed = torch.tensor([1 + a for a in accepted], device=self.device)
            next_pos = next_pos + fed
            # Rejected draft columns become holes; crop columns that are holes in every row.
            cols = torch.arange(width, device=self.device)[None, :]
            mask[:, -width:] = (cols < fed[:, None]).long()
            trailing = width - int(fed.max())
            if trailing > 0:
                cache.crop(-trailing)
                mask = mask[:, :-trailing]

        return [self._output(row) for row in rows]

    def _forward(self, input_ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: Any,
                 keep: int, hidden: bool) -> torch.Tensor:
        """Logits of the last ``keep`` positions, or their final hidden states when ``hidden``."""
        if hidden:
            out = self._stack(input_ids=input_ids, attention_mask=mask, position_ids=positions,
                              past_key_values=cache, use_cache=True)
            return out.last_hidden_state[:, -keep:]
        out = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions,
                         past_key_values=cache, use_cache=True, logits_to_keep=keep)
        return out.logits.float()

    def _draft(self, row: _Row, cap: int) -> list[int]:
        assert row.constraint is not None and row.state is not None
        limit = min(cap, row.budget - len(row.out) - 1)
        if limit <= 0:
            return []
        data = row.constraint.draft_bytes(row.state, row.guess_type, limit=limit * 8)
        return self._draft_ids(data, limit)

    def _verify(self, row: _Row, logits: torch.Tensor, draft: list[int], head: torch.Tensor | None) -> int:
        """Choose tokens at the fed positions while they agree with the draft; returns how many draft
        tokens were accepted (they are in the cache; the last choice becomes ``row.pending``).
        ``logits`` holds hidden states instead when ``head`` (output embeddings) is given."""
        j = 0
        eos = self.vocab.eos_ids
        while True:
            step_logits = logits[j]
            if row.constraint is None:
                token = int(torch.argmax(step_logits))
            else:
                assert row.state is not None
                token = row.constraint.choose(row.state, step_logits, head)
            if token in eos:
                row.done = True
                return j
            if row.constraint is not None:
                prev = row.state
                row.state = row.constraint.advance(row.state, token)
                assert row.state is not None and prev is not None
                if len(row.state.stack) > len(prev.stack):
                    row.guess_type = row.state.stack[-1][0]
            row.out.append(token)
            if row.constraint is not None and row.constraint.is_complete(row.state):
                row.done = True  # EOS is then the only allowed token: no pass needed for it
                return j
            if len(row.out) >= row.budget:
                row.done, row.finished = True, False
                return j
            if j < len(draft) and token == draft[j]:
                j += 1
                continue
            row.pending = token
            return j

    def _output(self, row: _Row) -> DecodeOutput:
        if row.constraint is None:
            text = self.tokenizer.decode(row.out, skip_special_tokens=True)
        else:
            data = row.constraint.output_bytes(row.out)
            if not row.finished:
                assert row.state is not None
                data += row.constraint.completion(row.state)
            text = data.decode("utf-8", errors="replace")
        return DecodeOutput(text, list(row.out), row.passes, len(row.out), row.finished)


def decode_batch(
    model: Any,
    tokenizer: Any,
    prefix: str,
    prompts: Sequence[str],
    sources: Sequence[str],
    types: Sequence[Sequence[str]],
    mode: Mode = "speculative",
    config: DecodeConfig | None = None,
) -> list[DecodeOutput]:
    """One-shot convenience over :class:`Decoder` (keep a Decoder to reuse prefix KV across calls)."""
    return Decoder(model, tokenizer, config).decode(prefix, prompts, sources, types, mode)
