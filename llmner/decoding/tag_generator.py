"""Batched greedy generation of the tagged copy of each chunk, in three decoding modes: ``free``,
``constrained`` and ``speculative``. (Parsing the generated text into entities is the codecs'
``decode``; this module only generates.)

One loop serves all modes. Each pass feeds, per row, a lead -- the row's own prompt part on the first
pass, afterwards the token chosen last (not yet in the KV cache) -- whose last token is the root of a
draft tree (``drafting``): the remaining source as the trunk, plus branches where the model may write a
tag. The logits at the root and at every tree node are checked from the root down: the chosen token
at a node is the (constrained) argmax there; the walk moves to the child holding that token while there
is one, and the first choice without a child becomes the next pass's lead. ``free`` and
``constrained`` never draft (one token per pass), so ``speculative`` returns exactly what
``constrained`` returns, up to fp32 near-ties between differently shaped forward passes. The first
pass drafts too: the prompt prefill verifies the start of the source.

Draft size: a trunk of at most ``draft_tokens`` per row, plus ``branch_tokens`` of branches, within
``draft_budget`` tokens per pass over the batch (wide batches draft short trunks and no branches).
Drafts are tokenized with the tokenizer itself (its canonical split is what the model tends to write).

Batches with different accepted lengths per row (the approach): the cache is one [batch, columns]
grid with a 2-D attention mask. A pass appends the lead and the tree (right padded) to every row; each
row marks the columns it did not accept (rejected nodes, padding) as holes (mask 0), and position ids
count only a row's real tokens (a tree node's position is its root's plus its depth), so holes are
invisible to the model. A pass with a branching tree gets a 4-D mask instead (each node sees the past,
the lead and its own ancestors). Columns that are holes in every row are cropped off the end
(``DynamicCache.crop``). Finished rows are dropped from the batch (``batch_select_indices``).

The prompt prefix shared by all chunks of a schema (``PromptBuilder.split``) is tokenized and run once;
its KV is expanded to every batch, and each row's own part (text + suffix) is left-padded after it (the
padding becomes holes as well). The cache grows in place (``kv_cache``): a pass writes only its own
columns instead of copying the whole cache.

The first pass carries each row's whole prompt part, and prompts differ in length: padded to the longest,
27 % of the columns fed for 20 CMeEE dev records were padding, nearly all of it in first passes
(NCBI-Disease: 14 %). So on a CPU the first pass runs in groups of rows of similar prompt lengths
(``_prefill_groups``), each group padded only to its own longest row, and the groups' keys and values are
laid into the batch's one grid as a single pass over all rows would have laid them. Later passes feed one
lead token per row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from llmner.decoding.constraint import CopyConstraint, CopyState
from llmner.decoding.drafting import DraftLimits, DraftTree, draft_tree
from llmner.decoding.kv_cache import growing_cache, keeps_every_column
from llmner.decoding.vocab import TokenVocab, vocab_for
from llmner.errors import ConfigError
from llmner.modeling.attention import CPU_GQA_SDPA
from llmner.modeling.precision import matmul_autocast, model_matmul_dtype

Mode = Literal["free", "constrained", "speculative"]
MODES: tuple[str, ...] = ("free", "constrained", "speculative")


@dataclass(frozen=True, slots=True)
class TagGenerationConfig:
    # Token budget per row: max_new_tokens if set, else budget_factor * source tokens + budget_extra.
    # An untuned model in free mode may ramble to the budget; constrained modes stop when the copy is done.
    max_new_tokens: int | None = None
    budget_factor: float = 2.0
    budget_extra: int = 32
    draft_tokens: int = 32          # trunk per row, at most; adaptive (TagGenerator._adapt_trunk): long drafts
                                    # waste compute on rejected tails
    draft_budget: int = 64          # draft tokens (trunks and branches) per pass over the whole batch: a
                                    # pass costs about its batch x width tokens, so wide batches draft
                                    # shorter (8 rows -> 8 each, no branches)
    branch_tokens: int = 16         # per row, on top of the trunk: tag branches of the draft tree (drafting)
    branch_length: int = 4          # tokens per branch after its fork: a marker and a word or two
    branch_forks: int = 3           # trunk word boundaries that get close/open branches, nearest first
    max_depth: int = 4              # open tags at once (GENIA nests up to 3-4)
    tags_inside_words: bool = False # allow markers between two letters/digits (no gold mention needs it)
    reuse_prefix_cache: bool = True
    in_place_cache: bool = True     # the KV cache grows in place (kv_cache.GrowingLayer; same output, fewer copies)
    grouped_prefill: bool = True    # on a CPU, the first pass runs rows of similar prompt lengths together, not
                                    # every row padded to the longest prompt (TagGenerator._prefill_groups)


@dataclass(slots=True)
class TagGeneration:
    text: str                       # the generated string (EOS excluded)
    token_ids: list[int]
    forward_passes: int             # passes this row took part in (its prompt prefill included)
    output_tokens: int
    finished: bool = True           # False: the token budget ran out (constrained modes then copy the rest)
    token_probs: list[float] = field(default_factory=list)  # per token of token_ids, its probability when
                                    # chosen (constrained modes: among the allowed tokens)
    char_tokens: list[int] | None = None  # per character of text, the index of the token that wrote it
                                    # (-1: completed without the model); None when the text can't be mapped

    def span_probability(self, start: int, end: int) -> float | None:
        """Probability the model gave to writing ``text[start:end]``: the product over the distinct
        tokens that wrote those characters (None when characters can't be mapped to tokens)."""
        if self.char_tokens is None or not (0 <= start < end <= len(self.char_tokens)):
            return None
        prob = 1.0
        for index in dict.fromkeys(self.char_tokens[start:end]):
            if index >= 0:
                prob *= self.token_probs[index]
        return prob


def char_token_indices(pieces: Sequence[bytes], tail: bytes, text: str) -> list[int] | None:
    """Per character of ``text`` (the UTF-8 decoding of ``pieces`` + ``tail``), the index of the piece
    holding its first byte (-1 for ``tail``); None when ``text`` is not that decoding."""
    owners = [i for i, piece in enumerate(pieces) for _ in piece] + [-1] * len(tail)
    data = b"".join(pieces) + tail
    out: list[int] = []
    i = 0
    for char in text:
        width = len(char.encode("utf-8"))
        if data[i : i + width] != char.encode("utf-8"):
            return None  # invalid UTF-8 was replaced, or the text was not decoded from these bytes
        out.append(owners[i])
        i += width
    return out if i == len(data) else None


@dataclass(slots=True)
class _Row:
    index: int
    budget: int
    constraint: CopyConstraint | None
    state: CopyState | None
    out: list[int] = field(default_factory=list)
    probs: list[float] = field(default_factory=list)  # per token of out
    pending: int = -1
    passes: int = 0
    done: bool = False
    finished: bool = True
    guess_type: int | None = None
    opened: bool = False            # the row wrote an open tag (then open branches are drafted too)
    trunk_cap: int = 1 << 30        # adaptive trunk length (see _adapt_trunk)


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


class TagGenerator:
    """Generates tagged copies of source texts: holds a model, its tokenizer's precomputed vocabulary
    and the KV caches of prompt prefixes."""

    def __init__(self, model: Any, tokenizer: Any, config: TagGenerationConfig | None = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.config = config or TagGenerationConfig()
        self.vocab: TokenVocab = vocab_for(tokenizer, eos_token_ids(model, tokenizer))
        self.device = next(model.parameters()).device
        self._matmul_dtype = model_matmul_dtype(model)  # bf16 on CPUs that do it natively (precision.py)
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

    def _new_cache(self) -> Any:
        """An empty KV cache for a batch: growing in place (``kv_cache``) or transformers' copying one."""
        if self.config.in_place_cache:
            return growing_cache(self.model.config)
        from transformers import DynamicCache

        return DynamicCache(config=self.model.config)

    # -- prefix KV --------------------------------------------------------------------------------
    def _prefix_kv(self, prefix: str) -> tuple[list[int], list[tuple[torch.Tensor, torch.Tensor]]]:
        hit = self._prefixes.get(prefix)
        if hit is None:
            from transformers import DynamicCache

            ids = self.encode(prefix)
            cache = DynamicCache(config=self.model.config)
            if ids:
                with torch.inference_mode(), matmul_autocast(self._matmul_dtype, self.device):
                    self.model(input_ids=torch.tensor([ids], device=self.device), past_key_values=cache,
                               use_cache=True, logits_to_keep=1)
            kv = [(layer.keys, layer.values) for layer in cache.layers] if ids else []
            hit = (ids, kv)
            if len(self._prefixes) > 16:  # a few schemas at a time; drop the oldest
                self._prefixes.pop(next(iter(self._prefixes)))
            self._prefixes[prefix] = hit
        return hit

    # -- generation -------------------------------------------------------------------------------
    def generate(
        self,
        prefix: str,
        prompts: Sequence[str],
        sources: Sequence[str],
        types: Sequence[Sequence[str]],
        mode: Mode = "speculative",
        open_bias: float = 0.0,
    ) -> list[TagGeneration]:
        """Greedy outputs for rows whose prompt is ``prefix + prompts[i]`` and whose source text is
        ``sources[i]`` (tags allowed: ``types[i]``). ``open_bias``: a logit bonus for opening a tag
        (constrained and speculative modes; ``CopyConstraint``)."""
        if mode not in MODES:
            raise ConfigError(f"unknown decoding mode {mode!r} (expected one of {', '.join(MODES)})")
        if not (len(prompts) == len(sources) == len(types)):
            raise ConfigError("generate: prompts, sources and types must have the same length")
        if not prompts:
            return []
        with torch.inference_mode():
            return self._generate(prefix, list(prompts), list(sources), list(types), mode, open_bias)

    def _generate(self, prefix: str, prompts: list[str], sources: list[str], types: list[Sequence[str]],
                mode: str, open_bias: float = 0.0) -> list[TagGeneration]:
        cfg = self.config
        rows: list[_Row] = []
        for i, (src, tps) in enumerate(zip(sources, types)):
            budget = cfg.max_new_tokens or int(cfg.budget_factor * len(self.encode(src)) + cfg.budget_extra)
            constraint = (CopyConstraint(src, tps, self.vocab, cfg.max_depth, cfg.tags_inside_words, open_bias)
                          if mode != "free" else None)
            rows.append(_Row(i, max(budget, 1), constraint, constraint.start() if constraint else None))

        # Prompt: shared prefix KV (expanded) + each row's own part, left-padded; the first pass feeds the
        # row's own part as the lead of its first block (and, in speculative mode, a draft after it).
        prompt_ids = [self.encode(p) for p in prompts]
        batch = len(rows)
        cache = self._new_cache()
        prefix_kv: list[tuple[torch.Tensor, torch.Tensor]] = []
        if cfg.reuse_prefix_cache:
            prefix_ids, prefix_kv = self._prefix_kv(prefix)
            for layer, (k, v) in enumerate(prefix_kv):
                cache.update(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1), layer)
            n_prefix = len(prefix_ids)
        else:
            prompt_ids = [self.encode(prefix) + ids for ids in prompt_ids]
            n_prefix = 0
        mask = torch.ones(batch, n_prefix, dtype=torch.long, device=self.device)
        start = torch.full((batch,), n_prefix, dtype=torch.long, device=self.device)  # position of each lead's first token
        hidden = mode != "free" and self._stack is not None
        head = self._head if hidden else None
        memory: dict[bytes, str] = {}  # spans tagged so far in this batch -> type (drafted tagged again)
        active = list(range(batch))
        leads = prompt_ids
        prefill = True  # the first pass: each row's whole prompt part
        while True:
            per_row = max(2, min(cfg.draft_tokens, cfg.draft_budget // len(active)))
            nodes = max(per_row, min(per_row + cfg.branch_tokens, cfg.draft_budget // len(active)))
            if not self._tree_masks:
                nodes = per_row
            trees = [self._draft(rows[r], per_row, nodes, memory) if mode == "speculative" else DraftTree()
                     for r in active]
            block, new_mask_t, positions, lead_w, width = self._block(leads, trees, start.tolist())
            groups = self._prefill_groups(leads, trees) if prefill and self._can_group(cache) else []
            if len(groups) > 1:
                logits = self._grouped_pass(groups, leads, trees, start.tolist(), cache, mask, lead_w, width,
                                            prefix_kv, hidden)
            else:
                attention = self._attention(mask, new_mask_t, lead_w, leads, trees, width)
                logits = self._forward(block, attention, positions, cache, keep=width - lead_w + 1, hidden=hidden)
            prefill = False
            fed_block = torch.zeros_like(new_mask_t)
            last_fed = 0
            for b, (r, tree) in enumerate(zip(active, trees)):
                row = rows[r]
                row.passes += 1
                path = self._verify(row, logits[b], tree, head, memory)
                self._adapt_trunk(row, tree, path)
                cols = [lead_w - 1 + c for c in path]
                fed_block[b, lead_w - len(leads[b]) : lead_w] = 1
                if cols:
                    fed_block[b, cols] = 1
                last_fed = max(last_fed, cols[-1] if cols else lead_w - 1)
                start[b] = start[b] + len(leads[b]) + len(path)  # the next lead is the pending token alone
            mask = torch.cat([mask, fed_block], dim=1)
            trailing = width - 1 - last_fed
            if trailing > 0:  # columns that are holes in every row
                cache.crop(-trailing)
                mask = mask[:, :-trailing]
            keep_rows = [b for b, r in enumerate(active) if not rows[r].done]
            if not keep_rows:
                break
            if len(keep_rows) < len(active):
                index = torch.tensor(keep_rows, device=self.device)
                cache.batch_select_indices(index)
                mask, start = mask[index], start[index]
                active = [active[b] for b in keep_rows]
            leads = [[rows[r].pending] for r in active]

        return [self._output(row) for row in rows]

    def _block(self, leads: list[list[int]], trees: list[DraftTree], starts: list[int]
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int, int]:
        """One pass's input ids, new-column mask and position ids: per row its lead left-padded to the
        longest lead, then its draft tree, right-padded; also the lead width and the block width."""
        lead_w = max(len(lead) for lead in leads)
        width = lead_w + max(len(t) for t in trees)
        block, new_mask, positions = [], [], []
        pad = self.vocab.pad_id
        for lead, tree, s0 in zip(leads, trees, starts):
            gap, tail = lead_w - len(lead), width - lead_w - len(tree)
            block.append([pad] * gap + lead + tree.tokens + [pad] * tail)
            new_mask.append([0] * gap + [1] * (len(lead) + len(tree)) + [0] * tail)
            root = s0 + len(lead) - 1
            positions.append([0] * gap + list(range(s0, root + 1)) + [root + d for d in tree.depths] + [0] * tail)
        return (torch.tensor(block, device=self.device), torch.tensor(new_mask, device=self.device),
                torch.tensor(positions, device=self.device), lead_w, width)

    def _attention(self, mask: torch.Tensor, new_mask: torch.Tensor, lead_w: int, leads: list[list[int]],
                   trees: list[DraftTree], width: int) -> torch.Tensor:
        if all(t.linear for t in trees):
            return torch.cat([mask, new_mask], dim=1)
        return self._tree_attention(mask, lead_w, [len(lead) for lead in leads], trees, width)

    # Fixed cost of one more first-pass group, in padded token columns: a forward over SmolLM2's 30 layers
    # and a copy of the shared prefix's keys and values for the group's rows. At 16, BC5CDR's batches split
    # to save about 10 % of their first-pass columns and ran no faster (0.96x, within this machine's noise);
    # at 48 they stay whole and only batches with much longer rows split (S800, CMeEE).
    GROUP_PASS_COST = 48

    def _can_group(self, cache: Any) -> bool:
        """Grouped prefill on a CPU, where padded columns cost their full compute, and for caches whose
        layers all keep every column (a sliding-window layer drops old ones)."""
        return self.config.grouped_prefill and self.device.type == "cpu" and keeps_every_column(cache)

    def _prefill_groups(self, leads: list[list[int]], trees: list[DraftTree]) -> list[list[int]]:
        """Rows partitioned (sorted by lead length, contiguous runs) so that the columns the first pass
        computes, padding included, plus ``GROUP_PASS_COST`` per group, are fewest; one group when
        splitting saves nothing."""
        order = sorted(range(len(leads)), key=lambda i: (len(leads[i]), len(trees[i])))
        n = len(order)
        best = [0.0] + [float("inf")] * n   # best[j]: cheapest cost of the first j rows in order
        cut = [0] * (n + 1)
        for j in range(1, n + 1):
            longest_tree = 0
            for i in range(j, 0, -1):  # the last group is order[i-1 : j]
                longest_tree = max(longest_tree, len(trees[order[i - 1]]))
                cost = best[i - 1] + (j - i + 1) * (len(leads[order[j - 1]]) + longest_tree) + self.GROUP_PASS_COST
                if cost < best[j]:
                    best[j], cut[j] = cost, i - 1
        groups, j = [], n
        while j > 0:
            groups.append(order[cut[j]:j])
            j = cut[j]
        return groups[::-1]

    def _grouped_pass(self, groups: list[list[int]], leads: list[list[int]], trees: list[DraftTree],
                      starts: list[int], cache: Any, mask: torch.Tensor, lead_w: int, width: int,
                      prefix_kv: list[tuple[torch.Tensor, torch.Tensor]], hidden: bool) -> torch.Tensor:
        """The first pass, one forward per group of rows: each group in a cache of its own (the shared
        prefix expanded to its rows), then every group's new keys and values laid into ``cache`` where
        one pass over all rows (lead width ``lead_w``, block width ``width``) would have put them.
        Returns what that pass returns: per row the outputs at its root and tree nodes."""
        n_past = mask.shape[1]
        keep = width - lead_w + 1
        out: torch.Tensor | None = None
        keys: list[torch.Tensor] = []
        values: list[torch.Tensor] = []
        for group in groups:
            g_leads, g_trees = [leads[i] for i in group], [trees[i] for i in group]
            block, new_mask, positions, g_lead_w, g_width = self._block(g_leads, g_trees, [starts[i] for i in group])
            g_cache = self._new_cache()
            for layer, (k, v) in enumerate(prefix_kv):
                g_cache.update(k.expand(len(group), -1, -1, -1), v.expand(len(group), -1, -1, -1), layer)
            index = torch.tensor(group, device=self.device)
            g_mask = mask[index]
            attention = self._attention(g_mask, new_mask, g_lead_w, g_leads, g_trees, g_width)
            result = self._forward(block, attention, positions, g_cache, keep=g_width - g_lead_w + 1, hidden=hidden)
            if out is None:
                out = result.new_zeros(len(leads), keep, result.shape[-1])
            out[index, : result.shape[1]] = result
            for layer_index, layer in enumerate(g_cache.layers):
                if len(keys) <= layer_index:
                    shape = (len(leads), layer.keys.shape[1], width, layer.keys.shape[3])
                    keys.append(layer.keys.new_zeros(shape))
                    values.append(layer.values.new_zeros(shape))
                for j, row in enumerate(group):
                    lo, hi = len(leads[row]), len(trees[row])
                    src = slice(n_past + g_lead_w - lo, n_past + g_lead_w + hi)
                    keys[layer_index][row, :, lead_w - lo : lead_w + hi] = layer.keys[j, :, src]
                    values[layer_index][row, :, lead_w - lo : lead_w + hi] = layer.values[j, :, src]
        for layer_index, (k, v) in enumerate(zip(keys, values)):
            cache.update(k, v, layer_index)
        assert out is not None
        return out

    @property
    def _tree_masks(self) -> bool:
        """Branching drafts need a custom 4-D attention mask: eager and SDPA attention take one."""
        impl = getattr(self.model.config, "_attn_implementation", None)
        return impl in ("sdpa", "eager", CPU_GQA_SDPA)

    def _tree_attention(self, mask: torch.Tensor, lead_w: int, lead_lens: list[int], trees: list[DraftTree],
                        width: int) -> torch.Tensor:
        """[batch, 1, width, past + width] mask: every block column sees the row's past tokens (not its
        holes), its lead before it, and its own ancestors in the draft tree; padding sees itself."""
        batch, past = mask.shape
        block = torch.zeros(batch, width, width, dtype=torch.bool, device=self.device)
        eye = torch.eye(width, dtype=torch.bool, device=self.device)
        for b, (n_lead, tree) in enumerate(zip(lead_lens, trees)):
            rows = block[b]
            rows.copy_(eye)
            lo = lead_w - n_lead
            rows[lo:lead_w, lo:lead_w] = torch.tril(torch.ones(n_lead, n_lead, dtype=torch.bool, device=self.device))
            for i, parent in enumerate(tree.parents):
                col = lead_w + i
                rows[col] |= rows[lead_w - 1 + parent]
        seen = torch.cat([mask.bool()[:, None, :].expand(batch, width, past), block], dim=2)[:, None]
        if getattr(self.model.config, "_attn_implementation", None) == "eager":
            dtype = self._head.dtype if self._head is not None else next(self.model.parameters()).dtype
            return torch.zeros(seen.shape, dtype=dtype, device=self.device).masked_fill(~seen, torch.finfo(dtype).min)
        return seen

    def _forward(self, input_ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: Any,
                 keep: int, hidden: bool) -> torch.Tensor:
        """Logits of the last ``keep`` positions, or their final hidden states when ``hidden``."""
        with matmul_autocast(self._matmul_dtype, self.device):
            if hidden:
                out = self._stack(input_ids=input_ids, attention_mask=mask, position_ids=positions,
                                  past_key_values=cache, use_cache=True)
                return out.last_hidden_state[:, -keep:]
            out = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions,
                             past_key_values=cache, use_cache=True, logits_to_keep=keep)
        return out.logits.float()

    def _draft(self, row: _Row, trunk: int, nodes: int, memory: dict[bytes, str]) -> DraftTree:
        assert row.constraint is not None and row.state is not None
        limit = min(trunk, row.trunk_cap, row.budget - len(row.out) - 1)
        if limit <= 0:
            return DraftTree()
        cfg = self.config
        nodes = max(limit, min(nodes, limit + cfg.branch_tokens))
        limits = DraftLimits(trunk=limit, nodes=nodes, branch=cfg.branch_length, forks=cfg.branch_forks)
        return draft_tree(row.constraint, row.state, row.guess_type, memory, row.opened, limits, self._draft_ids)

    @staticmethod
    def _adapt_trunk(row: _Row, tree: DraftTree, path: list[int]) -> None:
        """Every drafted token costs compute on a CPU (about 3 ms per token vs 50 ms per pass for
        SmolLM2-135M), so a row whose drafts die early drafts short: after a rejection the next trunk is
        twice the accepted depth plus 4 (at least 8), after a full acceptance it doubles."""
        if not len(tree):
            return
        depth = len(path)
        if depth >= max(tree.depths):
            row.trunk_cap = min(row.trunk_cap, max(tree.depths)) * 2
        else:
            row.trunk_cap = max(8, 2 * depth + 4)

    def _verify(self, row: _Row, logits: torch.Tensor, tree: DraftTree, head: torch.Tensor | None,
                memory: dict[bytes, str]) -> list[int]:
        """Choose tokens from the root along the draft tree while a child holds the choice; returns the
        tree columns accepted (they are in the cache; the last choice becomes ``row.pending``).
        ``logits[c]`` is the prediction after tree column c (column 0: the root); it holds hidden states
        instead when ``head`` (output embeddings) is given."""
        col = 0
        path: list[int] = []
        eos = self.vocab.eos_ids
        while True:
            step_logits = logits[col]
            if row.constraint is None:
                token = int(torch.argmax(step_logits))
                prob = float(torch.softmax(step_logits.float(), dim=0)[token])
            else:
                assert row.state is not None
                token, prob = row.constraint.choose(row.state, step_logits, head)
            if token in eos:
                row.done = True
                return path
            if row.constraint is not None:
                prev = row.state
                row.state = row.constraint.advance(row.state, token)
                assert row.state is not None and prev is not None
                if len(row.state.stack) > len(prev.stack):
                    row.guess_type = row.state.stack[-1][0]
                    row.opened = True
                elif len(row.state.stack) < len(prev.stack):
                    self._remember(row.constraint, prev.stack[-1], row.state.pos, memory)
            row.out.append(token)
            row.probs.append(prob)
            if row.constraint is not None and row.constraint.is_complete(row.state):
                row.done = True  # EOS is then the only allowed token: no pass needed for it
                return path
            if len(row.out) >= row.budget:
                row.done, row.finished = True, False
                return path
            child = tree.children.get(col, {}).get(token)
            if child is not None:
                path.append(child)
                col = child
                continue
            row.pending = token
            return path

    @staticmethod
    def _remember(constraint: CopyConstraint, opened: tuple[int, int], end: int, memory: dict[bytes, str]) -> None:
        span = constraint.target[opened[1] : end]
        if 0 < len(span) <= 96:
            memory.pop(span, None)
            memory[span] = constraint.types[opened[0]]
            if len(memory) > 32:  # the most recent spans
                memory.pop(next(iter(memory)))

    def _output(self, row: _Row) -> TagGeneration:
        pieces = [b"" if t in self.vocab.eos_ids else self.vocab.token_bytes[t] or b"" for t in row.out]
        tail = b""
        if row.constraint is None:
            text = self.tokenizer.decode(row.out, skip_special_tokens=True)
        else:
            if not row.finished:
                assert row.state is not None
                tail = row.constraint.completion(row.state)
            text = (b"".join(pieces) + tail).decode("utf-8", errors="replace")
        return TagGeneration(text, list(row.out), row.passes, len(row.out), row.finished, list(row.probs),
                             char_token_indices(pieces, tail, text))
