"""The copy constraint of the inline format, as a byte automaton walked together with the token trie.

A state is (pos, stack, marker):
  pos     byte offset into the escaped source (``escape_text(source).encode()``) copied so far;
  stack   the open tags, innermost last, as (type index, pos where it opened);
  marker  the bytes of a marker written so far but not finished (``b"<Dis"``), else ``b""``.

From a state a byte is allowed when it copies the next source byte, or (at a piece boundary: markers
never split an escape like ``&amp;`` or a UTF-8 character) it starts or continues a marker that is
valid there: an open marker of a schema type, or the close marker of the innermost open tag.
Markers are also kept out of words (see ``boundary``) unless ``tags_inside_words``.
Rules that keep every state finishable (without them a model can reach dead ends or loop on ``<T></T>``):
  - no empty tags: a tag closes only after at least one source byte since it opened;
  - no open after the last source byte (it could never be closed non-empty);
  - at most ``max_depth`` open tags, and the same type never opens twice at the same position.
Every live state can therefore finish: copy the rest, close what is open. EOS is allowed exactly when
the source is copied, nothing is open and no marker is pending -- and then it is the only choice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from llmner.codecs.inline import close_marker, escaped_pieces, open_marker
from llmner.decoding.vocab import TokenVocab, TrieNode


def _wordy(char: str) -> bool:
    return char.isalnum() and ord(char) < 0x2E80


class CopyState(NamedTuple):
    pos: int
    stack: tuple[tuple[int, int], ...]
    marker: bytes


class CopyConstraint:
    """Allowed tokens for one (source, types) pair. Cheap per step: the allowed set is found by walking
    the token trie along the few bytes the automaton accepts, and memoised per state."""

    def __init__(self, source: str, types: Sequence[str], vocab: TokenVocab, max_depth: int = 4,
                 tags_inside_words: bool = False, open_bias: float = 0.0) -> None:
        pieces = [p.encode("utf-8") for p in escaped_pieces(source)]
        self.target = b"".join(pieces)
        # boundary[i]: a marker may be written at byte i. Between two pieces, and unless
        # tags_inside_words, not between two letters/digits of an alphabetic script (no gold mention of
        # NCBI-Disease, GENIA, BC5CDR, BC2GM or LINNAEUS dev starts or ends inside such a word; an
        # untuned model otherwise sprinkles tags between letters). CJK characters are words of their own.
        self.boundary = bytearray(len(self.target) + 1)
        offset = 0
        self.boundary[0] = 1
        for i, p in enumerate(pieces):
            offset += len(p)
            if tags_inside_words or i + 1 == len(source) or not (_wordy(source[i]) and _wordy(source[i + 1])):
                self.boundary[offset] = 1
        self.types = tuple(types)
        if not self.types:
            raise ValueError("constrained decoding needs at least one entity type")
        self.opens = [open_marker(t).encode("utf-8") for t in self.types]
        self.closes = [close_marker(t).encode("utf-8") for t in self.types]
        self.vocab = vocab
        self.max_depth = max_depth
        # Added to the logit of every token that starts an open marker where copying could go on: a
        # greedy decoder that misses entities (recall-limited, as on CMeEE) opens tags more readily.
        # The token's reported probability stays the model's own (unbiased).
        self.open_bias = float(open_bias)
        self._allowed: dict[CopyState, tuple[list[int], torch.Tensor]] = {}
        self._bonus: dict[CopyState, torch.Tensor | None] = {}

    def start(self) -> CopyState:
        return CopyState(0, (), b"")

    def is_complete(self, s: CopyState) -> bool:
        return s.pos == len(self.target) and not s.stack and not s.marker

    # -- markers -----------------------------------------------------------------------------------
    def markers(self, s: CopyState) -> list[tuple[bytes, int, bool]]:
        """(marker bytes, type index, is_open) valid at this state's position."""
        out: list[tuple[bytes, int, bool]] = []
        if not self.boundary[s.pos]:
            return out
        if s.pos < len(self.target) and len(s.stack) < self.max_depth:
            opened_here = {t for t, p in s.stack if p == s.pos}
            out.extend((m, i, True) for i, m in enumerate(self.opens) if i not in opened_here)
        if s.stack and s.stack[-1][1] < s.pos:
            i = s.stack[-1][0]
            out.append((self.closes[i], i, False))
        return out

    def step(self, s: CopyState, byte: int) -> CopyState | None:
        """The state after writing one byte, None when the byte is not allowed."""
        if not s.marker:
            if s.pos < len(self.target) and self.target[s.pos] == byte:
                return CopyState(s.pos + 1, s.stack, b"")
            if byte == 0x3C and self.markers(s):  # '<': an escaped source never contains it
                return CopyState(s.pos, s.stack, b"<")
            return None
        m = s.marker + bytes((byte,))
        for marker, i, is_open in self.markers(s):
            if marker == m:
                stack = s.stack + ((i, s.pos),) if is_open else s.stack[:-1]
                return CopyState(s.pos, stack, b"")
            if marker.startswith(m):
                return CopyState(s.pos, s.stack, m)
        return None

    def advance(self, s: CopyState, token_id: int) -> CopyState | None:
        if token_id in self.vocab.eos_ids:
            return s if self.is_complete(s) else None
        bs = self.vocab.token_bytes[token_id]
        if not bs:
            return None
        for b in bs:
            s = self.step(s, b)
            if s is None:
                return None
        return s

    def _next_bytes(self, s: CopyState) -> list[int]:
        if not s.marker:
            out = []
            if s.pos < len(self.target):
                out.append(self.target[s.pos])
            if self.boundary[s.pos] and self.markers(s):
                out.append(0x3C)
            return out
        n = len(s.marker)
        return sorted({m[n] for m, _, _ in self.markers(s) if m.startswith(s.marker) and len(m) > n})

    def _collect(self, node: TrieNode, s: CopyState, out: list[int]) -> None:
        for b in self._next_bytes(s):
            child = node.children.get(b)
            if child is None:
                continue
            s2 = self.step(s, b)
            if s2 is None:
                continue
            out.extend(child.ids)
            if child.children:
                self._collect(child, s2, out)

    def allowed(self, s: CopyState) -> tuple[list[int], torch.Tensor]:
        """Sorted allowed token ids (list and tensor); never empty for a live state."""
        hit = self._allowed.get(s)
        if hit is not None:
            return hit
        if self.is_complete(s):
            ids = sorted(self.vocab.eos_ids)
        else:
            ids = []
            self._collect(self.vocab.root, s, ids)
            ids.sort()
        if not ids:
            raise RuntimeError("no token of this tokenizer can continue the constrained output (missing byte tokens?)")
        hit = (ids, torch.tensor(ids, dtype=torch.long))
        self._allowed[s] = hit
        return hit

    def choose(self, s: CopyState, vector: torch.Tensor, head: torch.Tensor | None = None) -> tuple[int, float]:
        """Constrained greedy: the allowed token with the highest logit (lowest id on ties), and its
        probability among the allowed tokens (1.0 when it was the only one).

        ``vector`` is a row of logits, or -- when ``head`` (the output embedding matrix) is given -- the
        final hidden state: then only the allowed rows of the output layer are computed, which makes
        the output layer (49k x 576 for SmolLM2, a fifth of the model) nearly free. The probability is
        over the allowed tokens because they are the model's real alternatives here (copy the next
        character, open a tag of one of the types, close one)."""
        ids, t = self.allowed(s)
        if len(ids) == 1:
            return ids[0], 1.0
        if head is None:
            scores = vector.index_select(0, t).float()
        else:
            scores = head.index_select(0, t).float() @ vector.float()
        bonus = self._open_bonus(s, ids) if self.open_bias else None
        best = int(torch.argmax(scores if bonus is None else scores + bonus))
        return ids[best], float(torch.softmax(scores, dim=0)[best])

    def _open_bonus(self, s: CopyState, ids: list[int]) -> torch.Tensor | None:
        """``open_bias`` on the allowed tokens that start an open marker (``<`` not followed by ``/``)
        at a state with no marker pending; None where there is none."""
        if s in self._bonus:
            return self._bonus[s]
        bonus = None
        if not s.marker:
            opens = [tb[:1] == b"<" and tb[:2] != b"</" for tb in (self.vocab.token_bytes[i] for i in ids)]
            if any(opens):
                bonus = torch.tensor([self.open_bias if o else 0.0 for o in opens])
        self._bonus[s] = bonus
        return bonus

    # -- drafting ----------------------------------------------------------------------------------
    def pick_marker(self, s: CopyState, guess_type: int | None) -> tuple[bytes, int, bool] | None:
        """The marker a pending marker most likely becomes: the close if it can only be a close, else
        an open of ``guess_type`` (or the first type that fits); None when no marker is pending."""
        if not s.marker:
            return None
        cands = [(m, i, o) for m, i, o in self.markers(s) if m.startswith(s.marker)]
        if not cands:
            return None
        pick = next((c for c in cands if not c[2]), None) if s.marker.startswith(b"</") else None
        if pick is None:
            pick = next((c for c in cands if c[2] and c[1] == guess_type), cands[0])
        return pick

    def draft_bytes(self, s: CopyState, guess_type: int | None = None, limit: int = 256) -> bytes:
        """What the model most likely writes next: the pending marker finished (``pick_marker``), then
        the rest of the source, then the closes of the open tags."""
        out = b""
        stack = list(s.stack)
        if s.marker:
            pick = self.pick_marker(s, guess_type)
            if pick is None:
                return b""
            out = pick[0][len(s.marker):]
            if pick[2]:
                stack.append((pick[1], s.pos))
            else:
                stack.pop()
        rest = self.target[s.pos : s.pos + limit]
        out += rest
        if s.pos + limit >= len(self.target):
            out += b"".join(self.closes[i] for i, _ in reversed(stack))
        return out

    def completion(self, s: CopyState) -> bytes:
        """Bytes that finish a state without the model (used only when the token budget runs out)."""
        out = b""
        stack = list(s.stack)
        if s.marker:
            cands = [(m, i, o) for m, i, o in self.markers(s) if m.startswith(s.marker)]
            closing = next((c for c in cands if not c[2]), None)
            if closing is not None:
                out += closing[0][len(s.marker):]
                stack.pop()
            else:  # finish the open and give it at least one source piece (it is legal here)
                out += cands[0][0][len(s.marker):]
                stack.append((cands[0][1], s.pos))
        # Opens are never allowed at the end, so copying the rest gives every open tag some content.
        out += self.target[s.pos:]
        out += b"".join(self.closes[i] for i, _ in reversed(stack))
        return out
