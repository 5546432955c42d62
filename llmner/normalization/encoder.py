"""The encoder neighbour: cosine of mean-pooled sentence embeddings (default: the packaged
all-MiniLM-L6-v2, the selector's base encoder; or a synonym encoder fine-tuned by
:mod:`llmner.training.synonym_encoder`, a BERT-style directory), an alternative to character n-grams
for step 4 (``neighbour="encoder"``: every dictionary name is encoded once) or a reranker of the
n-gram neighbour's shortlist (``neighbour="rerank"``: only the shortlisted names are encoded).

Embeddings are memoized per text within an :class:`Encoder`, so two dictionaries that share a
vocabulary (MeSH under Disease and Chemical) encode its names once.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from llmner.modeling.selector import (
    PACKAGED_MINILM,
    quiet_transformers,
    resolve_encoder,
)

log = logging.getLogger(__name__)


class Encoder:
    def __init__(self, reference: str = PACKAGED_MINILM, batch_size: int = 256, max_length: int = 32) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        path = resolve_encoder(reference)
        self.path = path
        self._key: str | None = None
        with quiet_transformers():
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModel.from_pretrained(path).float().eval()   # a float16 save is read as float32
        self.torch = torch
        self.batch_size = batch_size
        self.max_length = max_length
        self.reference = reference
        self._memo: dict[str, np.ndarray] = {}
        self.encoded = 0              # texts encoded so far (the memo's misses) and the seconds it took
        self.encode_seconds = 0.0

    def encode(self, texts: Sequence[str], memo: bool = True) -> np.ndarray:
        """L2-normalized embeddings, one row per text. ``memo=False`` (queries): texts not yet
        memoized are encoded without being kept, so a long-running worker's memo stays bounded by
        its dictionaries' names."""
        # longest first, so a batch pads to about its own length (names are 2-20 tokens)
        todo = sorted(dict.fromkeys(t for t in texts if t not in self._memo), key=len, reverse=True)
        fresh: dict[str, np.ndarray] = {}
        torch = self.torch
        started = time.perf_counter()
        for i in range(0, len(todo), self.batch_size):
            batch = todo[i : i + self.batch_size]
            enc = self.tokenizer(batch, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
            with torch.inference_mode():
                hidden = self.model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)   # mean pooling, as the model was trained
            pooled = torch.nn.functional.normalize(pooled, dim=-1).numpy().astype(np.float32)
            for text, vec in zip(batch, pooled):
                fresh[text] = vec
        if memo:
            self._memo.update(fresh)
        self.encoded += len(todo)
        self.encode_seconds += time.perf_counter() - started
        dim = self.model.config.hidden_size
        return (np.stack([fresh[t] if t in fresh else self._memo[t] for t in texts]) if texts
                else np.zeros((0, dim), np.float32))

    @property
    def key(self) -> str:
        """A content hash of the encoder's files (weights, config, tokenizer): what its embeddings depend on."""
        if self._key is None:
            h = hashlib.sha256(b"mean-pool-l2/" + str(self.max_length).encode())
            for file in sorted(self.path.iterdir()):
                if file.is_file() and file.suffix in (".json", ".safetensors", ".bin", ".txt"):
                    h.update(file.name.encode())
                    with file.open("rb") as fh:
                        for block in iter(lambda: fh.read(1 << 20), b""):
                            h.update(block)
            self._key = h.hexdigest()[:20]
        return self._key


_SHARED: dict[str, Encoder] = {}


def shared_encoder(reference: str = PACKAGED_MINILM) -> Encoder:
    """One encoder (and one memo) per reference in a process."""
    if reference not in _SHARED:
        _SHARED[reference] = Encoder(reference)
    return _SHARED[reference]


class EncoderIndex:
    """Names with their identifiers; ``nearest`` answers (identifier, cosine) per query text."""

    def __init__(self, names: Sequence[str], ids: Sequence[str], encoder: Encoder, cache: str | Path | None = None) -> None:
        """``cache``: a directory where the names' embeddings are kept between processes, keyed by
        the encoder's content hash and the names (a worker's start then reads them instead of
        encoding every name again)."""
        self.ids = list(ids)
        self.encoder = encoder
        self.cached = False          # read back from ``file`` rather than encoded
        self.file: Path | None = None
        if cache:
            digest = hashlib.sha256("\n".join(names).encode("utf-8")).hexdigest()[:20]
            self.file = Path(cache) / f"{encoder.key}-{digest}.npy"
            if self.file.is_file():
                matrix = np.load(self.file, allow_pickle=False)
                if matrix.shape == (len(names), encoder.model.config.hidden_size):
                    self.matrix, self.cached = matrix, True
                    return
        self.matrix = encoder.encode(list(names))
        if self.file is not None:
            self._store(self.file)

    def _store(self, file: Path) -> None:
        tmp = None
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=file.parent, suffix=".npy", delete=False) as handle:
                tmp = handle.name
                np.save(handle, self.matrix, allow_pickle=False)
            os.replace(tmp, file)   # atomic: a concurrent reader sees the old file or the whole new one
        except OSError as exc:
            # A directory the process cannot write (an image's read-only root filesystem, when the
            # embeddings baked into it are of another bundle) costs the next start the encoding again,
            # not this worker its start: the embeddings are in memory already.
            log.warning("normalizer embeddings not kept in %s: %s", file.parent, exc)
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)

    def nearest(self, texts: Sequence[str]) -> list[tuple[str | None, float]]:
        if not len(self.ids) or not texts:
            return [(None, 0.0)] * len(texts)
        sims = self.encoder.encode(list(texts), memo=False) @ self.matrix.T
        best = sims.argmax(axis=1)
        return [(self.ids[j], float(sims[i, j])) for i, j in enumerate(best)]


def rerank(encoder: Encoder, texts: Sequence[str], shortlists: Sequence[Sequence[tuple[str, str]]]) -> list[tuple[str | None, float]]:
    """For each text, the (identifier, cosine) of the shortlisted (name, identifier) closest to it
    in the encoder's space; (None, 0.0) for an empty shortlist."""
    names = [n for short in shortlists for n, _ in short]
    queries = encoder.encode(list(texts), memo=False)
    vecs = encoder.encode(names)
    out, k = [], 0
    for i, short in enumerate(shortlists):
        if not short:
            out.append((None, 0.0))
            continue
        sims = vecs[k : k + len(short)] @ queries[i]
        j = int(sims.argmax())
        out.append((short[j][1], float(sims[j])))
        k += len(short)
    return out
