"""Joint training over several corpora: temperature sampling of the corpus, then the next example.

The corpus of each draw is chosen with probability p_i ∝ w_i · n_i^(1/T) (n_i = examples of corpus
i, w_i its weight, 1 unless given): T = 1 samples proportionally to size, larger T flattens towards
uniform so that small corpora are not drowned; a weight raises one corpus's share beyond what its
size gives it (a language the base model barely knows needs more than its share of examples).
Within a corpus, examples come in a seeded shuffled order, a new permutation per pass.
``next_batch(n)`` draws the corpus once for n examples (one schema per batch, so its prompt prefix
runs once). The whole stream is a pure function of (sizes, temperature, weights, seed): the
state is the number of draws so far, and restoring it replays the stream to that point (exact resume).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from llmner.errors import ConfigError


def temperature_probabilities(sizes: Mapping[str, int], temperature: float,
                              corpus_weights: Mapping[str, float] | None = None) -> dict[str, float]:
    """p_i = w_i n_i^(1/T) / sum_j w_j n_j^(1/T) over the corpora with at least one example (w_i: the
    corpus's weight in ``corpus_weights``, 1 when absent)."""
    if temperature <= 0:
        raise ConfigError(f"sampling temperature must be > 0, got {temperature}")
    given = dict(corpus_weights or {})
    unknown = sorted(set(given) - set(sizes))
    if unknown:
        raise ConfigError(f"corpus weights for corpora that are not trained on: {', '.join(unknown)}")
    bad = {name: w for name, w in given.items() if not w > 0}
    if bad:
        raise ConfigError(f"corpus weights must be > 0, got {bad}")
    weights = {name: given.get(name, 1.0) * float(n) ** (1.0 / temperature) for name, n in sizes.items() if n > 0}
    if not weights:
        raise ConfigError("no training examples: every corpus is empty")
    total = sum(weights.values())
    return {name: w / total for name, w in weights.items()}


class TemperatureSampler:
    """An endless, seeded stream of (corpus, index into that corpus's examples)."""

    def __init__(self, sizes: Mapping[str, int], temperature: float = 1.0, seed: int = 0,
                 corpus_weights: Mapping[str, float] | None = None) -> None:
        self.sizes = {name: int(n) for name, n in sizes.items() if n > 0}
        self.temperature = float(temperature)
        self.seed = int(seed)
        self.probabilities = temperature_probabilities(self.sizes, self.temperature, corpus_weights)  # validates them
        self.corpus_weights = {name: float(w) for name, w in (corpus_weights or {}).items()}
        self._names = sorted(self.probabilities)
        self._cumulative: list[float] = []
        acc = 0.0
        for name in self._names:
            acc += self.probabilities[name]
            self._cumulative.append(acc)
        self._reset()

    def _reset(self) -> None:
        self._choice_rng = random.Random(f"{self.seed}/corpus-choice")
        self._order: dict[str, list[int]] = {}
        self._position: dict[str, int] = {name: 0 for name in self._names}
        self._passes: dict[str, int] = {name: 0 for name in self._names}
        self.drawn = 0
        self.batches = 0            # next_batch calls (replayed first on resume)
        self.batch_size = 0

    def _permutation(self, name: str) -> list[int]:
        order = list(range(self.sizes[name]))
        random.Random(f"{self.seed}/{name}/pass-{self._passes[name]}").shuffle(order)
        return order

    def _pick_corpus(self) -> str:
        u = self._choice_rng.random()
        for name, edge in zip(self._names, self._cumulative):
            if u < edge:
                return name
        return self._names[-1]

    def next(self) -> tuple[str, int]:
        return self._next_of(self._pick_corpus())

    def next_batch(self, n: int) -> tuple[str, list[int]]:
        """One corpus, drawn once, and the next ``n`` examples of it. A run uses one batch size."""
        if self.batches and n != self.batch_size:
            raise ConfigError(f"next_batch: batch size changed from {self.batch_size} to {n} within a run")
        self.batches += 1
        self.batch_size = n
        name = self._pick_corpus()
        return name, [self._next_of(name)[1] for _ in range(n)]

    def _next_of(self, name: str) -> tuple[str, int]:
        if name not in self._order or self._position[name] >= self.sizes[name]:
            if name in self._order:
                self._passes[name] += 1
            self._order[name] = self._permutation(name)
            self._position[name] = 0
        index = self._order[name][self._position[name]]
        self._position[name] += 1
        self.drawn += 1
        return name, index

    def take(self, n: int) -> list[tuple[str, int]]:
        return [self.next() for _ in range(n)]

    def state_dict(self) -> dict[str, Any]:
        return {"sizes": dict(self.sizes), "temperature": self.temperature, "seed": self.seed, "drawn": self.drawn,
                "batches": self.batches, "batch_size": self.batch_size, "corpus_weights": dict(self.corpus_weights)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        weights = dict(state.get("corpus_weights", {}))   # checkpoints from before weights existed: none
        if (dict(state["sizes"]) != self.sizes or float(state["temperature"]) != self.temperature
                or int(state["seed"]) != self.seed or weights != self.corpus_weights):
            raise ConfigError(
                "cannot resume: the checkpoint's sampler was built on other corpora sizes, temperature, weights or seed "
                f"({dict(state['sizes'])}, T={state['temperature']}, weights={weights}, seed={state['seed']}) than this run "
                f"({self.sizes}, T={self.temperature}, weights={self.corpus_weights}, seed={self.seed})"
            )
        self._reset()
        batches, batch_size = int(state.get("batches", 0)), int(state.get("batch_size", 0))
        for _ in range(batches):
            self.next_batch(batch_size)
        for _ in range(int(state["drawn"]) - batches * batch_size):
            self.next()
