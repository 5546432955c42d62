"""Tiny, deterministic random models and tokenizers, built in memory or in a temporary directory in
seconds with no download: for tests and for benchmarks that need a real model of the right shape.

- ``tiny_llama()`` / ``tiny_causal_tokenizer()``: a 2-layer random Llama (hidden 64) and a byte-level BPE
  tokenizer trained in memory (~0.2 s) on synthetic biomedical-ish sentences that include inline tags,
  so merges like `` <``, ``</`` or ``Disease>`` exist and tokens straddle tag boundaries as in real models.
  ChatML chat template, EOS ``<|im_end|>``, pad ``<|pad|>``, left padding.
- ``tiny_bert()`` / ``tiny_bert_tokenizer()``: a 2-layer random BERT (hidden 32) with a WordPiece
  tokenizer trained in memory (``[CLS] a [SEP] b [SEP]`` pairs).
- ``build_tiny_bert(dir)``: a random BERT encoder directory (selector tests).
- ``build_tiny_bundle(dir)``: a real model bundle of the above (LoRA Llama generator + BERT selector;
  with ``reader_schema``, a reader too).
- ``build_tiny_reader(dir, types)``: a reader (llmner.modeling.reader) with a random head on a tiny
  random Llama, its statistics taken from synthetic sentences.

Builders return fresh objects each call (tests may train them); the trained tokenizer JSON is memoised.
The models are random: their output has the right form, never the right entities.
"""

from __future__ import annotations

import random
import string
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_SUBJECTS = ["BRCA1", "IL-2", "the p53 gene", "NF-kappa B", "TNF-alpha", "c-fos", "insulin", "the CD4 receptor",
             "cyclin D1", "APC", "the GATA-1 promoter", "T cells", "HeLa cells", "monocytes", "Jurkat cells"]
_VERBS = ["is mutated in", "activates", "inhibits", "is associated with", "regulates", "binds to",
          "is expressed in", "was detected in", "protects against", "increases the risk of"]
_OBJECTS = ["breast cancer", "ovarian cancer", "colorectal adenomas", "Duchenne muscular dystrophy",
            "type 2 diabetes", "hemophilia A", "familial hypercholesterolemia", "leukemia",
            "the IL-2 promoter", "human B cells", "macrophages", "tumour growth", "myotonic dystrophy (DM)"]
_TYPES = ["Disease", "Chemical", "protein", "DNA", "RNA", "cell_line", "cell_type", "GENE", "Species"]
_EXTRA = ["Patients (n = 12) & controls < 5 years > 3 months.", "Linkage analysis of 3' UTR; p < 0.05.",
          "患者 出现 发热 和 咳嗽 。", "α-synuclein and β-amyloid [Aβ] levels rose 2-fold.",
          "Results:\tno  change\nin   expression ."]


def synthetic_sentences(n: int = 300, seed: int = 0) -> list[str]:
    """Plain and inline-tagged sentences (the tokenizer's training text; also handy test inputs)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        s, v, o = rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS)
        if i % 2:
            t1, t2 = rng.choice(_TYPES), rng.choice(_TYPES)
            out.append(f"<{t1}>{s}</{t1}> {v} <{t2}>{o}</{t2}>.")
        else:
            out.append(f"{s.capitalize()} {v} {o}.")
        if i % 10 == 0:
            out.append(rng.choice(_EXTRA))
    return out


@lru_cache(maxsize=4)
def _causal_tokenizer_json(vocab_size: int) -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<|pad|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(synthetic_sentences(), trainer=trainer)
    return tok.to_str()


def tiny_causal_tokenizer(vocab_size: int = 600, chat_template: bool = True):
    """Byte-level BPE (every byte is a token, so any text is encodable), left padding."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_causal_tokenizer_json(vocab_size)),
        eos_token="<|im_end|>", pad_token="<|pad|>", bos_token="<|im_start|>",
        padding_side="left", clean_up_tokenization_spaces=False,
    )
    if chat_template:
        tok.chat_template = CHATML_TEMPLATE
    return tok


def tiny_llama(tokenizer=None, seed: int = 0, layers: int = 2, hidden: int = 64, initializer_range: float = 0.2):
    """A random Llama. A wide initializer spreads the logits so fp32 near-ties (which could flip between
    differently shaped forward passes) are rare."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = tokenizer or tiny_causal_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        initializer_range=initializer_range, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.eval()
    return model


def tiny_causal_lm(seed: int = 0):
    """(model, tokenizer) pair."""
    tokenizer = tiny_causal_tokenizer()
    return tiny_llama(tokenizer, seed=seed), tokenizer


@lru_cache(maxsize=2)
def _bert_tokenizer_json(vocab_size: int) -> str:
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False)
    tok.train_from_iterator(synthetic_sentences(), trainer=trainer)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return tok.to_str()


def tiny_bert_tokenizer(vocab_size: int = 500):
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_bert_tokenizer_json(vocab_size)),
        unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )


def tiny_bert(tokenizer=None, seed: int = 0, layers: int = 2, hidden: int = 32):
    """A random BertModel (encoder only; wrap it as the selector needs)."""
    import torch
    from transformers import BertConfig, BertModel

    tokenizer = tokenizer or tiny_bert_tokenizer()
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=2 * hidden, max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = BertModel(config)
    model.eval()
    return model


_BERT_WORDS = ["the", "cancer", "disease", "gene", "patients", "with", "and", "of", "in", "type", "e", "ovarian",
               "breast", "syndrome", "a", "is", "chemical", "species", "cell", "line"]


def build_tiny_bert(directory: str | Path, hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    """Write a randomly initialised BERT + fast WordPiece tokenizer to ``directory``; return it."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    chars = [c for c in string.printable if not c.isspace()]
    chars += [chr(c) for c in range(0x4E00, 0x4E00 + 64)]  # a few CJK characters for zh texts
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + _BERT_WORDS + chars + ["##" + c for c in chars]
    vocab = list(dict.fromkeys(vocab))
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab={tok: i for i, tok in enumerate(vocab)}, do_lower_case=True)
    tokenizer.save_pretrained(str(directory))
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=2 * hidden, max_position_embeddings=256, type_vocab_size=2)
    BertModel(config).save_pretrained(str(directory))
    return directory


def build_tiny_reader(directory: str | Path, types: list[str], seed: int = 0, base_model: str | Path | None = None) -> Path:
    """A saved reader in ``directory`` tagging ``types``, on the tiny LM ``base_model`` (default: a new one,
    saved in ``directory``-base)."""
    import torch

    from llmner.modeling.reader import FrozenEncoder, Reader, ReaderConfig

    directory = Path(directory)
    base_dir = Path(base_model) if base_model is not None else directory.parent / f"{directory.name}-base"
    if base_model is None:
        model, tokenizer = tiny_causal_lm(seed=seed)
        model.save_pretrained(str(base_dir))
        tokenizer.save_pretrained(str(base_dir))
    encoder = FrozenEncoder(str(base_dir), device="cpu")
    texts = synthetic_sentences(40, seed=seed) + ["患者有高血压病史，服用氨氯地平。"]
    chars = {ch: i + 2 for i, ch in enumerate(sorted({ch for t in texts for ch in t}))}
    torch.manual_seed(seed)
    reader = Reader(ReaderConfig(base_model=str(base_dir), types=list(types), layers=[1, 2], projection=16, char_dim=8,
                                 lstm=8, max_tokens=32), chars, encoder=encoder)
    reader.set_statistics(encoder.layer_states(texts, reader.config.layers, 8))
    reader.save_pretrained(directory)
    return directory


def build_tiny_bundle(directory: str | Path, selector_threshold: float = 0.0, reader_schema: str | None = None,
                      proposer_schemas: Sequence[str] = ()) -> Path:
    """A real model bundle of tiny random models in ``directory``: a LoRA Llama generator
    (GeneratorModel) and a tiny BERT selector. The bundle threshold is 0 so the selector keeps what
    the random generator tags (tests compare entity lists, which should not be empty). With
    ``reader_schema`` a tiny reader tags that schema; each of ``proposer_schemas`` gets a tiny reader of
    its own (a proposer, in ``proposers/<schema>``, id ``proposer-tiny-<schema>``) that proposes
    candidates under it."""
    from llmner.bundle import PROPOSERS_DIR, BundleManifest, ProposerEntry, save_bundle
    from llmner.modeling.generator import GeneratorConfig, GeneratorModel
    from llmner.modeling.selector import SelectorConfig, SelectorModel
    from llmner.schema import get_schema

    directory = Path(directory)
    root = directory.parent / f"{directory.name}-parts"
    model, tokenizer = tiny_causal_lm()
    base_dir = root / "base"
    model.save_pretrained(str(base_dir))
    tokenizer.save_pretrained(str(base_dir))
    gen = GeneratorModel.from_base(GeneratorConfig(base_model=str(base_dir), lora_r=2, schemas=()),
                                   schemas=[get_schema("biomedical_en")], base=(model, tokenizer))
    gen.save_pretrained(root / "gen")
    enc = build_tiny_bert(root / "enc")
    sel = SelectorModel.from_encoder(SelectorConfig(encoder=str(enc), threshold=selector_threshold,
                                                    model_id="sel-tiny", trainable_layers=1))
    sel.save_pretrained(root / "sel")
    manifest = BundleManifest(name="tiny", generator_id="gen-tiny", selector_id="sel-tiny",
                              decoding_mode="constrained", selector_threshold=0.0)
    reader_dir = None
    if reader_schema is not None:
        reader_dir = build_tiny_reader(root / "reader", list(get_schema(reader_schema).type_names))
        manifest.reader_schemas = [reader_schema]
        manifest.reader_id = "reader-tiny"
    proposer_dirs: dict[str, str | Path] = {}
    # Every proposer reads with the first one's LM (a bundle's readers share one when they name the same).
    shared_base = root / f"proposer-{proposer_schemas[0]}-base" if proposer_schemas else None
    for k, schema in enumerate(proposer_schemas):
        entry = ProposerEntry(f"{PROPOSERS_DIR}/{schema}", f"proposer-tiny-{schema}", [schema])
        proposer_dirs[entry.directory] = build_tiny_reader(root / f"proposer-{schema}", list(get_schema(schema).type_names),
                                                           seed=1 + k, base_model=None if k == 0 else shared_base)
        manifest.proposers.append(entry)
    return Path(save_bundle(directory, root / "gen", root / "sel", manifest, reader_dir, proposer_dirs))
