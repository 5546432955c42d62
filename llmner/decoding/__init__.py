"""Batched generation for the generator: ``free``, ``constrained`` (exact copy of the source with
valid inline tags) and ``speculative`` (the same output as ``constrained`` with fewer forward passes).
"""

from llmner.decoding.constraint import CopyConstraint, CopyState
from llmner.decoding.tag_generator import (
    MODES,
    TagGeneration,
    TagGenerationConfig,
    TagGenerator,
    eos_token_ids,
)
from llmner.decoding.vocab import TokenVocab, token_bytes_table, vocab_for

__all__ = [
    "MODES", "CopyConstraint", "CopyState", "TagGenerationConfig", "TagGeneration", "TagGenerator", "TokenVocab",
    "eos_token_ids", "token_bytes_table", "vocab_for",
]
