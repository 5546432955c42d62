"""A tiny random BERT encoder directory for selector tests (built in seconds, no downloads)."""

from __future__ import annotations

import string
from pathlib import Path

WORDS = ["the", "cancer", "disease", "gene", "patients", "with", "and", "of", "in", "type", "e", "ovarian",
         "breast", "syndrome", "a", "is", "chemical", "species", "cell", "line"]


def build_tiny_bert(directory: Path, hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    """Write a randomly initialised BERT + fast WordPiece tokenizer to ``directory``; return it."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    chars = [c for c in string.printable if not c.isspace()]
    chars += [chr(c) for c in range(0x4E00, 0x4E00 + 64)]  # a few CJK characters for zh texts
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS + chars + ["##" + c for c in chars]
    vocab = list(dict.fromkeys(vocab))
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab={tok: i for i, tok in enumerate(vocab)}, do_lower_case=True)
    tokenizer.save_pretrained(str(directory))
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=2 * hidden, max_position_embeddings=256, type_vocab_size=2)
    BertModel(config).save_pretrained(str(directory))
    return directory
