"""Draft trees for copy-speculative decoding: the remaining source plus the tags the model may write.

A draft is a token trie rooted at the row's pending token (the token chosen last, not yet in the KV
cache). Its trunk is the state's most likely continuation (``CopyConstraint.draft_bytes``: the pending
marker finished, then the rest of the source). Branches fork off the trunk where the model is likely to
deviate from a plain copy, each one a marker followed by the next few source tokens:
  - the other types, when the pending marker is an open that is not finished yet (``<`` -> ``protein>``
    or ``DNA>``...);
  - entity memory: a span tagged earlier in this batch is drafted tagged again (open, span, close) where
    the source repeats it;
  - the close of the innermost open tag at each of the next word boundaries (where a tag ends is what a
    plain copy cannot know: without these branches every tag costs a rejected pass at its close);
  - an open of the type guessed for the row at the next word boundaries (at the nearest one only for
    rows that never opened a tag: most sentences of an untuned model never do).
Verification walks the trie along the model's constrained choices (decoder), so branches never change
the output, only how many forward passes it takes. Every candidate sequence is inserted in priority
order until the row's node budget is spent; sequences that share a prefix share trie nodes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from llmner.decoding.constraint import CopyConstraint, CopyState

_WHITESPACE = frozenset(b" \t\n\r")


@dataclass(slots=True)
class DraftTree:
    """Trie nodes in depth-first order: node i sits in block column ``1 + i``; column 0 is the root
    (the pending token). ``parents[i]`` is the column of node i's parent, ``depths[i]`` its distance
    from the root, ``children[c]`` maps a token to the column of the child of column c."""

    tokens: list[int] = field(default_factory=list)
    parents: list[int] = field(default_factory=list)
    depths: list[int] = field(default_factory=list)
    children: dict[int, dict[int, int]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def linear(self) -> bool:
        return all(p == i for i, p in enumerate(self.parents))

    @classmethod
    def from_sequences(cls, sequences: list[list[int]], budget: int) -> DraftTree:
        """Insert sequences in order (shared prefixes merge) until ``budget`` nodes exist, then lay the
        trie out depth-first so that every root-to-node path has increasing columns."""
        kids: list[dict[int, int]] = [{}]  # trie node 0 = root
        nodes: list[int] = [-1]
        for seq in sequences:
            at = 0
            for tok in seq:
                nxt = kids[at].get(tok)
                if nxt is None:
                    if len(nodes) - 1 >= budget:
                        break
                    nxt = len(nodes)
                    nodes.append(tok)
                    kids.append({})
                    kids[at][tok] = nxt
                at = nxt
        tree = cls()
        stack = [(child, 0, 1) for child in reversed(list(kids[0].values()))]
        while stack:
            node, parent_col, depth = stack.pop()
            col = len(tree.tokens) + 1
            tree.tokens.append(nodes[node])
            tree.parents.append(parent_col)
            tree.depths.append(depth)
            tree.children.setdefault(parent_col, {})[nodes[node]] = col
            stack.extend((child, col, depth + 1) for child in reversed(list(kids[node].values())))
        return tree


@dataclass(frozen=True, slots=True)
class DraftLimits:
    trunk: int                # tokens on the trunk
    nodes: int                # tokens in the whole tree (trunk included)
    branch: int               # tokens per branch after its fork (marker + a few source tokens)
    forks: int                # word boundaries of the trunk that get close/open branches


def draft_tree(
    constraint: CopyConstraint,
    state: CopyState,
    guess_type: int | None,
    memory: dict[bytes, str],
    opened_before: bool,
    limits: DraftLimits,
    tokenize: Callable[[bytes, int], list[int]],
) -> DraftTree:
    """The draft trie for one row in ``state`` (see the module docstring for the branches)."""
    trunk = tokenize(constraint.draft_bytes(state, guess_type, limit=limits.trunk * 8), limits.trunk)
    if not trunk:
        return DraftTree()
    sequences = [trunk]
    if limits.nodes > limits.trunk:  # a tree budget beyond the trunk: tag branches
        sequences += _type_alternatives(constraint, state, guess_type, limits, tokenize)
        points = _fork_points(constraint, state, trunk, limits)
        sequences += _memory_branches(constraint, points, trunk, memory, limits, tokenize)
        sequences += _marker_branches(constraint, points, trunk, guess_type, opened_before, limits, tokenize)
    return DraftTree.from_sequences(sequences, limits.nodes)


def _type_alternatives(constraint: CopyConstraint, state: CopyState, guess_type: int | None,
                       limits: DraftLimits, tokenize: Callable[[bytes, int], list[int]]) -> list[list[int]]:
    """The pending open marker finished as each type the trunk did not pick, then the source."""
    picked = constraint.pick_marker(state, guess_type)
    if picked is None or not picked[2]:
        return []
    out = []
    length = 2 * limits.branch
    for marker, i, is_open in constraint.markers(state):
        if is_open and i != picked[1] and marker.startswith(state.marker):
            opened = CopyState(state.pos, state.stack + ((i, state.pos),), b"")
            data = marker[len(state.marker):] + constraint.draft_bytes(opened, limit=length * 4)
            out.append(tokenize(data, length))
    return out


def _skip_space(constraint: CopyConstraint, pos: int) -> int:
    target = constraint.target
    while pos < len(target) and target[pos] in _WHITESPACE:
        pos += 1
    return pos


def _fork_points(constraint: CopyConstraint, state: CopyState, trunk: list[int],
                 limits: DraftLimits) -> list[tuple[int, CopyState]]:
    """(trunk tokens before the fork, state there) at the first ``forks`` trunk token boundaries where
    a marker is legal, directly or after whitespace; nearest first."""
    points: list[tuple[int, CopyState]] = []
    s: CopyState | None = state
    for k, tok in enumerate(trunk):
        if s is None or len(points) >= limits.forks:
            break
        if not s.marker and (constraint.markers(s) or constraint.markers(CopyState(_skip_space(constraint, s.pos), s.stack, b""))):
            points.append((k, s))
        s = constraint.advance(s, tok)
    return points


def _branch(constraint: CopyConstraint, pos: int, at: int, markers: bytes, resume: int, length: int,
            tokenize: Callable[[bytes, int], list[int]]) -> list[int]:
    """Tokens of: the source from ``pos`` to ``at`` (whitespace before an open), the markers, then the
    source from ``resume`` on."""
    data = constraint.target[pos:at] + markers + constraint.target[resume : resume + length * 4]
    return tokenize(data, length)


def _memory_branches(constraint: CopyConstraint, points: list[tuple[int, CopyState]], trunk: list[int],
                     memory: dict[bytes, str], limits: DraftLimits,
                     tokenize: Callable[[bytes, int], list[int]]) -> list[list[int]]:
    """Open, remembered span, close: where the source repeats a span tagged earlier in the batch."""
    if not memory:
        return []
    out = []
    index = {t: i for i, t in enumerate(constraint.types)}
    for k, s in points:
        q = _skip_space(constraint, s.pos)
        there = CopyState(q, s.stack, b"")
        legal = {i for _, i, is_open in constraint.markers(there) if is_open}
        for span, type_name in memory.items():
            i = index.get(type_name)
            end = q + len(span)
            if i in legal and constraint.target[q:end] == span and constraint.boundary[end]:
                markers = constraint.opens[i] + span + constraint.closes[i]
                out.append(trunk[:k] + _branch(constraint, s.pos, q, markers, end, limits.branch * 2, tokenize))
    return out


def _marker_branches(constraint: CopyConstraint, points: list[tuple[int, CopyState]], trunk: list[int],
                     guess_type: int | None, opened_before: bool, limits: DraftLimits,
                     tokenize: Callable[[bytes, int], list[int]]) -> list[list[int]]:
    """Closes of the innermost tag right after a word, and opens of the guessed type before one."""
    closes, opens = [], []
    for n, (k, s) in enumerate(points):
        for marker, _, is_open in constraint.markers(s):
            if not is_open:
                closes.append(trunk[:k] + _branch(constraint, s.pos, s.pos, marker, s.pos, limits.branch, tokenize))
        if n and not opened_before:  # a row that never tagged: an open at the nearest boundary only
            continue
        q = _skip_space(constraint, s.pos)
        for marker, i, is_open in constraint.markers(CopyState(q, s.stack, b"")):
            if is_open and i == (guess_type or 0):
                opens.append(trunk[:k] + _branch(constraint, s.pos, q, marker, q, limits.branch, tokenize))
    return closes + opens
