"""SelectorRuntime on PyTorch (eager): the reference backend, and the one used while training."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from llmner.doc import Candidate
from llmner.modeling.selector import SelectorModel, TokenFeaturizer, TokenWindow
from llmner.runtime.base import SelectorRuntime


def length_order(candidates: Sequence[Candidate], context_chars: int) -> list[int]:
    """Indices sorted by approximate input length, so batches pad little (results are un-sorted after)."""
    def approx(c: Candidate) -> int:
        return min(c.start, context_chars) + (c.end - c.start) + min(len(c.text) - c.end, context_chars) + len(c.definition)

    return sorted(range(len(candidates)), key=lambda i: approx(candidates[i]))


class TorchSelectorRuntime(SelectorRuntime):
    def __init__(self, model: SelectorModel, batch_size: int = 32) -> None:
        self.model = model.eval()
        self.batch_size = batch_size
        self.threshold = model.config.threshold
        self.model_id = model.config.model_id or "selector"

    @classmethod
    def from_pretrained(cls, path: str | Path, batch_size: int = 32) -> TorchSelectorRuntime:
        return cls(SelectorModel.from_pretrained(path), batch_size)

    @torch.inference_mode()
    def score(self, candidates: Sequence[Candidate]) -> np.ndarray:
        if self.model.config.head == "tokens":
            # In order: a chunk's candidates come together, so each batch shares its (window, type) rows.
            return self.model.score(candidates, self.batch_size)
        out = np.zeros(len(candidates), dtype=np.float32)
        order = length_order(candidates, self.model.config.context_chars)
        for i in range(0, len(order), self.batch_size):
            idx = order[i : i + self.batch_size]
            feats = self.model.featurize([candidates[j] for j in idx])
            probs = self.model(**{k: torch.from_numpy(v) for k, v in feats.items()})[1]
            out[idx] = probs.float().numpy()
        return out

    def token_featurizer(self) -> TokenFeaturizer | None:
        featurizer = self.model.featurizer
        return featurizer if isinstance(featurizer, TokenFeaturizer) else None

    @torch.inference_mode()
    def token_probabilities(self, windows: Sequence[TokenWindow]) -> list[tuple[np.ndarray, np.ndarray]]:
        featurizer = self.token_featurizer()
        if featurizer is None:
            return super().token_probabilities(windows)
        out = []
        for i in range(0, len(windows), self.batch_size):
            inputs, offsets = featurizer.encode(windows[i : i + self.batch_size])
            probs = self.model(**{k: torch.from_numpy(v) for k, v in inputs.items()})[1].float().numpy()
            out += list(zip(offsets, probs, strict=True))
        return out
