"""The tag generator's in-place KV cache (llmner.decoding.kv_cache) against transformers' DynamicLayer."""

from __future__ import annotations

import pytest
import torch
from transformers.cache_utils import DynamicCache, DynamicLayer

from llmner.decoding import TagGenerationConfig, TagGenerator
from llmner.decoding.kv_cache import GrowingLayer, growing_cache, keeps_every_column
from llmner.schema import get_schema
from llmner.testing import tiny_causal_lm


def _same(growing: GrowingLayer, dynamic: DynamicLayer) -> None:
    assert growing.get_seq_length() == dynamic.get_seq_length()
    assert torch.equal(growing.keys, dynamic.keys) and torch.equal(growing.values, dynamic.values)


def test_growing_layer_holds_what_a_dynamic_layer_holds_through_updates_crops_and_row_drops():
    gen = torch.Generator().manual_seed(0)
    growing, dynamic = GrowingLayer(), DynamicLayer()

    def update(rows: int, width: int) -> None:
        keys = torch.randn(rows, 2, width, 4, generator=gen)
        values = torch.randn(rows, 2, width, 4, generator=gen)
        out_g, out_d = growing.update(keys, values), dynamic.update(keys, values)
        assert torch.equal(out_g[0], out_d[0]) and torch.equal(out_g[1], out_d[1])
        _same(growing, dynamic)

    # An expanded prefix first, as the tag generator feeds it (a view, not a copy, of one row).
    prefix = torch.randn(1, 2, 40, 4, generator=gen)
    growing.update(prefix.expand(5, -1, -1, -1), prefix.expand(5, -1, -1, -1))
    dynamic.update(prefix.expand(5, -1, -1, -1), prefix.expand(5, -1, -1, -1))
    _same(growing, dynamic)
    buffer = growing._key_buffer
    update(5, 7)
    assert growing._key_buffer is buffer  # room to spare: written in place, not reallocated
    growing.crop(-3)
    dynamic.crop(-3)
    _same(growing, dynamic)
    update(5, 2)  # overwrites the cropped columns
    rows = torch.tensor([4, 1, 2])
    growing.batch_select_indices(rows)
    dynamic.batch_select_indices(rows)
    _same(growing, dynamic)
    for width in (300, 1, 500):  # past the spare columns: the buffer grows and keeps what it held
        update(3, width)
    assert growing._key_buffer is not buffer and growing._key_buffer.shape[-2] >= growing.get_seq_length()
    growing.batch_repeat_interleave(2)
    dynamic.batch_repeat_interleave(2)
    _same(growing, dynamic)
    with pytest.raises(ValueError):
        growing.update(torch.zeros(1, 2, 1, 4), torch.zeros(1, 2, 1, 4))  # rows the cache does not have
    with pytest.raises(ValueError):
        growing.crop(3)
    growing.reset()
    assert growing.get_seq_length() == 0 and not growing.is_initialized


def test_growing_cache_replaces_only_plain_full_attention_layers():
    from transformers import Gemma2Config
    from transformers.cache_utils import DynamicSlidingWindowLayer

    model, _ = tiny_causal_lm(seed=1)
    cache = growing_cache(model.config)
    assert len(cache.layers) == model.config.num_hidden_layers
    assert all(type(layer) is GrowingLayer for layer in cache.layers)
    # Gemma 2 alternates sliding-window and full-attention layers: only the full ones grow in place.
    mixed = Gemma2Config(num_hidden_layers=4, hidden_size=32, intermediate_size=64, num_attention_heads=2,
                         num_key_value_heads=1, head_dim=16, vocab_size=100, sliding_window=8)
    kinds = [type(layer) for layer in growing_cache(mixed).layers]
    assert kinds == [DynamicSlidingWindowLayer, GrowingLayer, DynamicSlidingWindowLayer, GrowingLayer]
    assert keeps_every_column(cache) and keeps_every_column(DynamicCache(config=model.config))
    assert not keeps_every_column(growing_cache(mixed))   # grouped prefill is then not used


@pytest.mark.parametrize("mode", ["constrained", "speculative"])
def test_in_place_cache_gives_the_same_tokens_and_probabilities(mode):
    # Rows of different lengths finish at different passes (rows dropped), speculative passes crop
    # rejected draft columns: every cache operation the generator uses.
    model, tokenizer = tiny_causal_lm(seed=1)
    schema = get_schema("genia")
    texts = ["IL-2 binds the IL-2 promoter in T cells", "NF-kappa B", "患者 出现 发热 和 咳嗽 。",
             "Germline mutations in APC cause familial adenomatous polyposis ."]
    outputs = []
    for in_place in (False, True):
        generator = TagGenerator(model, tokenizer, TagGenerationConfig(in_place_cache=in_place, max_new_tokens=40))
        outputs.append(generator.generate("Tag the entities.\n", [t + " =>" for t in texts], texts,
                                          [schema.type_names] * len(texts), mode))
    for copied, in_place in zip(*outputs):
        assert in_place.token_ids == copied.token_ids and in_place.text == copied.text
        assert in_place.forward_passes == copied.forward_passes
        assert in_place.token_probs == pytest.approx(copied.token_probs, abs=1e-6)
