"""The reader: a small tagging head on a frozen multilingual LM's hidden states.

Why it exists: the generator (SmolLM2) and the selector (MiniLM) learned most of their Chinese from
CMeEE's 15,000 training records, and on Chinese clinical text the pipeline stays near 40 strict F1.
Gemma-3-270M was pretrained on many languages; kept frozen, its hidden states already separate drugs,
diseases and body parts, and a head trained on them reads CMeEE dev at about 51 (session 36's probe,
docs/training.md). The pipeline hands the schemas a bundle's reader covers (``BundleManifest.reader_schemas``)
to the reader instead of the generator and selector.

Per character of a text the head reads:

- the mean over ``ReaderConfig.layers`` of the hidden state of the LM token that holds the character, each
  layer standardized per dimension with statistics of training tokens (a few of Gemma's dimensions reach
  4e4; the statistics are saved with the head);
- a learned embedding of the character itself (``chars.json``: characters seen at least twice in training);
- a flag for the first character of its token;

then a BiLSTM and one O/B/I tagger per entity type, so entities of different types may nest. A span's
score is the geometric mean of P(B) at its first character, P(I) at the others and 1 - P(I) after it.

    reader = Reader.from_pretrained(dir)              # loads the frozen LM named by its config
    reader.read(["患者服用氨氯地平"])                      # [[Entity(4, 8, 'dru', ..., source='reader')]]
    reader.save_pretrained(dir)                       # reader_config.json, reader_head.safetensors, chars.json

Texts longer than ``max_tokens`` LM tokens are read in consecutive windows (each its own forward pass).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from llmner.doc import Entity
from llmner.errors import ConfigError, DataNotFoundError
from llmner.modeling.selector import PROBABILITY_FLOOR, TOKEN_B, TOKEN_I, TOKEN_O

CONFIG_NAME = "reader_config.json"
WEIGHTS_NAME = "reader_head.safetensors"
CHARS_NAME = "chars.json"
PAD_CHAR, UNKNOWN_CHAR = 0, 1       # character ids; characters proper start at 2


@dataclass(slots=True)
class ReaderConfig:
    base_model: str = "gemma-3-270m"      # a packaged model name or a local Hugging Face directory (frozen)
    types: list[str] = field(default_factory=list)   # entity types, in tagger order
    layers: list[int] = field(default_factory=lambda: [6, 9, 12, 18])   # hidden_states indices (0: embeddings)
    hidden_size: int = 0                  # the LM's; set when the statistics are
    projection: int = 256
    char_dim: int = 64
    lstm: int = 192
    dropout: float = 0.3
    max_tokens: int = 256                 # LM tokens per forward pass (longer texts: windows)
    batch_size: int = 16                  # texts per LM forward pass (sorted by length)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_pretrained(cls, path: str | Path) -> ReaderConfig:
        """The config of the reader saved at ``path`` (read without loading its LM)."""
        file = Path(path) / CONFIG_NAME
        if not file.is_file():
            raise DataNotFoundError(f"not a reader directory: {file} missing")
        return cls.from_dict(json.loads(file.read_text(encoding="utf-8")), str(file))

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = CONFIG_NAME) -> ReaderConfig:
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {sorted(unknown)}")
        config = cls(**data)
        if not config.types or len(set(config.types)) != len(config.types):
            raise ConfigError(f"{where}: types must be a non-empty list of distinct names, got {config.types!r}")
        if not config.layers or config.max_tokens < 8:
            raise ConfigError(f"{where}: layers must be non-empty and max_tokens at least 8")
        return config


def _head_module(config: ReaderConfig, n_chars: int) -> Any:
    import torch
    from torch import nn

    class ReaderHead(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.norm = nn.LayerNorm(config.hidden_size)
            self.proj = nn.Linear(config.hidden_size, config.projection)
            self.emb = nn.Embedding(n_chars, config.char_dim, padding_idx=PAD_CHAR)
            self.lstm = nn.LSTM(config.projection + config.char_dim + 1, config.lstm, batch_first=True, bidirectional=True)
            self.drop = nn.Dropout(config.dropout)
            self.out = nn.Linear(2 * config.lstm, 3 * len(config.types))
            # Per-dimension statistics of each layer's training tokens (buffers: saved with the weights).
            self.register_buffer("mean", torch.zeros(len(config.layers), config.hidden_size))
            self.register_buffer("std", torch.ones(len(config.layers), config.hidden_size))

        def forward(self, features: torch.Tensor, chars: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
            """(batch, chars, hidden) standardized features -> (batch, chars, types, 3) O/B/I logits."""
            x = self.drop(torch.relu(self.proj(self.norm(features))))
            x = torch.cat([x, self.drop(self.emb(chars)), first[..., None]], -1)
            h, _ = self.lstm(x)
            return self.out(self.drop(h)).view(*chars.shape, len(config.types), 3)

    return ReaderHead()


@dataclass(slots=True)
class TokenFeatures:
    """One text's LM tokens: character offsets (tokens, 2) and the standardized layer mean (tokens, hidden)."""

    offsets: np.ndarray
    features: np.ndarray


class FrozenEncoder:
    """The frozen LM: hidden states of the chosen layers per token, with character offsets."""

    def __init__(self, base_model: str, device: str | None = None) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        from llmner.modeling.loading import auto_device, resolve_base_model

        path = resolve_base_model(base_model)
        self.device = auto_device(device).device
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.tokenizer.padding_side = "right"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        # fp32 weights: a few hidden dimensions reach 4e4, beyond fp16; bf16 matrix multiplies would change
        # the features the head was trained on.
        self.model = AutoModel.from_pretrained(str(path), dtype=torch.float32, local_files_only=True).to(self.device).eval()
        self.hidden_size = int(self.model.config.hidden_size)

    def windows(self, text: str, max_tokens: int) -> list[tuple[int, int]]:
        """Character ranges of ``text`` each of at most ``max_tokens`` tokens (with the special ones)."""
        offsets = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        per = max(1, max_tokens - 2)
        if len(offsets) <= per:
            return [(0, len(text))]
        out, start = [], 0
        for k in range(per, len(offsets), per):
            out.append((start, offsets[k][0]))
            start = offsets[k][0]
        out.append((start, len(text)))
        return out

    def layer_states(self, texts: Sequence[str], layers: Sequence[int], batch_size: int
                     ) -> list[tuple[np.ndarray, list[np.ndarray]]]:
        """Per text (each at most a window long): token offsets (tokens, 2) and each layer's fp32 states
        (tokens, hidden), special tokens included (their offsets are (0, 0))."""
        import torch

        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))   # similar lengths per batch
        out: list[Any] = [None] * len(texts)
        with torch.inference_mode():
            for s in range(0, len(order), batch_size):
                idx = order[s : s + batch_size]
                enc = self.tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True,
                                     return_offsets_mapping=True)
                mapping = enc.pop("offset_mapping")
                hidden = self.model(**{k: v.to(self.device) for k, v in enc.items()}, output_hidden_states=True).hidden_states
                for j, i in enumerate(idx):
                    k = int(enc["attention_mask"][j].sum())
                    out[i] = (mapping[j, :k].numpy().astype(np.int32),
                              [hidden[layer][j, :k].float().cpu().numpy() for layer in layers])
        return out


class Reader:
    """A frozen LM and a trained head: ``read(texts)`` -> entities per text (``source="reader"``)."""

    def __init__(self, config: ReaderConfig, chars: dict[str, int], head: Any = None,
                 encoder: FrozenEncoder | None = None) -> None:
        self.config = config
        self.chars = chars
        self.encoder = encoder
        if config.hidden_size <= 0:
            if encoder is None:
                raise ConfigError("a reader without a hidden size needs its encoder to take it from")
            config.hidden_size = encoder.hidden_size
        self.head = head if head is not None else _head_module(config, len(chars) + 2)
        self.head.eval()
        self.model_id = f"reader-{config.base_model if '/' not in config.base_model else Path(config.base_model).name}"

    # -- persistence --------------------------------------------------------------------------------
    def save_pretrained(self, path: str | Path, half: bool = False) -> Path:
        """Config, characters and head weights; ``half``: the weights stored fp16 (half the bytes of a
        shipped bundle; loaded back as fp32), the standardization statistics always fp32 (some means
        reach 4e4, where fp16 steps are 32 wide)."""
        import torch
        from safetensors.torch import save_file

        root = Path(path)
        root.mkdir(parents=True, exist_ok=True)
        (root / CONFIG_NAME).write_text(json.dumps(self.config.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        (root / CHARS_NAME).write_text(json.dumps(self.chars, ensure_ascii=False), encoding="utf-8")
        weights = {k: v.detach().contiguous().cpu() for k, v in self.head.state_dict().items()}
        if half:
            weights = {k: v if k in ("mean", "std") else v.to(torch.float16) for k, v in weights.items()}
        save_file(weights, str(root / WEIGHTS_NAME))
        return root

    @classmethod
    def from_pretrained(cls, path: str | Path, base_model: str | None = None, device: str | None = None,
                        encoder: FrozenEncoder | None = None) -> Reader:
        """The reader saved at ``path``; ``base_model`` overrides the LM its config names (a local copy)."""
        root = Path(path)
        config = ReaderConfig.from_pretrained(root)
        chars = json.loads((root / CHARS_NAME).read_text(encoding="utf-8"))
        if base_model is not None:
            config.base_model = str(base_model)
        reader = cls(config, chars, encoder=encoder)
        reader.load_weights(root)
        if reader.encoder is None:
            reader.encoder = FrozenEncoder(config.base_model, device)
        if reader.encoder.hidden_size != config.hidden_size:
            raise ConfigError(f"reader {root} was trained on a {config.hidden_size}-dimensional LM; "
                              f"{config.base_model} has {reader.encoder.hidden_size}")
        reader.head.to(reader.encoder.device)
        return reader

    def load_weights(self, path: str | Path) -> None:
        from safetensors.torch import load_file

        self.head.load_state_dict({k: v.float() for k, v in load_file(str(Path(path) / WEIGHTS_NAME)).items()})

    # -- features -----------------------------------------------------------------------------------
    def set_statistics(self, states: Sequence[tuple[np.ndarray, list[np.ndarray]]]) -> None:
        """Per-layer, per-dimension mean and standard deviation over the tokens of ``states``
        (``FrozenEncoder.layer_states`` items; special tokens, which cover no character, left out)."""
        import torch

        real = [off[:, 1] > off[:, 0] for off, _ in states]
        for li in range(len(self.config.layers)):
            a = np.concatenate([layers[li][keep] for (_, layers), keep in zip(states, real)]).astype(np.float64)
            self.head.mean[li] = torch.from_numpy(a.mean(0)).float()
            self.head.std[li] = torch.from_numpy(a.std(0) + 1e-3).float()

    def standardized_mean(self, layers: Sequence[np.ndarray]) -> np.ndarray:
        """The mean of the layers, each standardized and clipped to [-8, 8]: (tokens, hidden) float32."""
        mean, std = self.head.mean.cpu().numpy(), self.head.std.cpu().numpy()
        out = np.zeros_like(layers[0], dtype=np.float32)
        for li, a in enumerate(layers):
            out += np.clip((a - mean[li]) / std[li], -8.0, 8.0)
        return out / len(layers)

    def token_features(self, texts: Sequence[str]) -> list[TokenFeatures]:
        """Each text's tokens (windows joined, offsets into the text) with their standardized features."""
        pieces, states = self.window_states(texts)
        return self.features_of(len(texts), pieces, states)

    def window_states(self, texts: Sequence[str]) -> tuple[list[tuple[int, int, int]], list[tuple[np.ndarray, list[np.ndarray]]]]:
        """The LM's states of every window of ``texts``: ((text index, window start, window end) per window,
        ``FrozenEncoder.layer_states`` per window)."""
        assert self.encoder is not None
        pieces: list[tuple[int, int, int]] = []
        for i, text in enumerate(texts):
            pieces += [(i, a, b) for a, b in self.encoder.windows(text, self.config.max_tokens)]
        states = self.encoder.layer_states([texts[i][a:b] for i, a, b in pieces], self.config.layers, self.config.batch_size)
        return pieces, states

    def features_of(self, n_texts: int, pieces: Sequence[tuple[int, int, int]],
                    states: Sequence[tuple[np.ndarray, list[np.ndarray]]]) -> list[TokenFeatures]:
        """``window_states``'s output as each text's ``TokenFeatures``, standardized with the statistics."""
        offsets: list[list[np.ndarray]] = [[] for _ in range(n_texts)]
        feats: list[list[np.ndarray]] = [[] for _ in range(n_texts)]
        for (i, a, _), (off, layers) in zip(pieces, states, strict=True):
            real = off[:, 1] > off[:, 0]                 # special tokens cover no character
            offsets[i].append(off[real] + a)
            feats[i].append(self.standardized_mean([x[real] for x in layers]))
        hidden = self.config.hidden_size
        return [TokenFeatures(np.concatenate(o) if o else np.zeros((0, 2), np.int32),
                              np.concatenate(f) if f else np.zeros((0, hidden), np.float32))
                for o, f in zip(offsets, feats)]

    def char_inputs(self, text: str, tokens: TokenFeatures) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per character: its token's features (zeros where no token holds it), its character id and the
        first-character-of-token flag."""
        n = len(text)
        token_of = np.full(n, -1, dtype=np.int64)
        first = np.zeros(n, dtype=np.float32)
        for k, (a, b) in enumerate(tokens.offsets):
            if b > a:
                token_of[a:b] = k
                first[a] = 1.0
        padded = np.concatenate([tokens.features.astype(np.float32), np.zeros((1, tokens.features.shape[1]), np.float32)])
        ids = np.array([self.chars.get(ch, UNKNOWN_CHAR) for ch in text], dtype=np.int64)
        return padded[token_of], ids, first

    # -- tagging ------------------------------------------------------------------------------------
    def logits(self, batch: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> Any:
        """O/B/I logits (batch, longest, types, 3) of ``char_inputs`` items, padded."""
        import torch

        device = next(self.head.parameters()).device
        n = max(1, max(ids.shape[0] for _, ids, _ in batch))
        f = torch.zeros(len(batch), n, self.config.hidden_size)
        ids_t = torch.zeros(len(batch), n, dtype=torch.long)
        first_t = torch.zeros(len(batch), n)
        for j, (ff, ii, fi) in enumerate(batch):
            k = ii.shape[0]
            f[j, :k] = torch.from_numpy(ff)
            ids_t[j, :k] = torch.from_numpy(ii)
            first_t[j, :k] = torch.from_numpy(fi)
        return self.head(f.to(device), ids_t.to(device), first_t.to(device))

    def read(self, texts: Sequence[str], batch_size: int = 64) -> list[list[Entity]]:
        """The entities of each text, with their span scores (``source="reader"``)."""
        out: list[list[Entity]] = []
        for s in range(0, len(texts), batch_size):
            chunk = list(texts[s : s + batch_size])
            out += self.tag(chunk, self.token_features(chunk))
        return out

    def tag(self, texts: Sequence[str], tokens: Sequence[TokenFeatures]) -> list[list[Entity]]:
        """The entities of texts whose token features are given (``read`` computes them; training reads
        them from its cache), in one head pass."""
        import torch

        inputs = [self.char_inputs(t, f) for t, f in zip(texts, tokens, strict=True)]
        with torch.inference_mode():
            probs = torch.softmax(self.logits(inputs), -1).float().cpu().numpy()
        return [decode_character_spans(t, probs[j, : len(t)], self.config.types) for j, t in enumerate(texts)]


def decode_character_spans(text: str, probs: np.ndarray, types: Sequence[str]) -> list[Entity]:
    """Entities from per-character O/B/I probabilities (chars, types, 3; the selector's tokens-head labels):
    the most probable label per character and type, a span opened at B (or at an I that follows O) and
    closed before the next B or O; scored as the tokens head scores a candidate (the geometric mean of
    P(B) at its start, P(I) inside and 1 - P(I) after it, probabilities floored alike). Unlike the
    selector's ``decode_spans`` there are no word pieces to run on to: a character is the unit."""
    labels = probs.argmax(-1)
    n = len(text)
    found: list[Entity] = []
    for k, etype in enumerate(types):
        start = None
        for c in range(n + 1):
            label = labels[c, k] if c < n else TOKEN_O
            if start is not None and label != TOKEN_I:
                found.append(_scored(text, start, c, etype, probs[:, k]))
                start = None
            if c < n and (label == TOKEN_B or (label == TOKEN_I and start is None)):
                start = c
    found.sort(key=lambda e: (e.start, -e.end, e.type))
    return found


def _scored(text: str, start: int, end: int, etype: str, probs: np.ndarray) -> Entity:
    logs = [math.log(max(float(probs[start, TOKEN_B]), PROBABILITY_FLOOR))]
    logs += [math.log(max(float(probs[c, TOKEN_I]), PROBABILITY_FLOOR)) for c in range(start + 1, end)]
    if end < len(text):
        logs.append(math.log(max(1.0 - float(probs[end, TOKEN_I]), PROBABILITY_FLOOR)))
    return Entity(start, end, etype, text[start:end], score=round(math.exp(sum(logs) / len(logs)), 6), source="reader")


__all__ = ["FrozenEncoder", "Reader", "ReaderConfig", "TokenFeatures", "decode_character_spans"]
