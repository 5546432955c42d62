"""Corpus readers and writers (one module per format) and the corpus registry.

>>> from llmner.data_processing.corpora import load_corpus
>>> docs = load_corpus("ncbi_disease", split="test")   # list[Document] with gold entities
"""

from llmner.data_processing.corpora.bc2gm import read_bc2gm, write_bc2gm
from llmner.data_processing.corpora.bioc_xml import (
    read_bioc,
    read_bioc_json,
    write_bioc,
    write_bioc_json,
)
from llmner.data_processing.corpora.brat import read_brat, write_brat
from llmner.data_processing.corpora.cblue import read_cblue, write_cblue
from llmner.data_processing.corpora.conll import read_conll, write_conll
from llmner.data_processing.corpora.formats import (
    FORMATS,
    PLAIN_TEXT,
    check_writable,
    get_format,
    guess_format,
    guess_output_format,
    read_documents,
    write_documents,
)
from llmner.data_processing.corpora.genia import read_genia_jsonl, write_genia_jsonl
from llmner.data_processing.corpora.jsonl import (
    read_jsonl,
    read_result_records,
    write_jsonl,
    write_result_records,
)
from llmner.data_processing.corpora.pubtator import (
    NCBI_DISEASE_CLASSES,
    read_pubtator,
    write_pubtator,
)
from llmner.data_processing.corpora.registry import (
    CORPORA,
    CORPUS_NAMES,
    DATA_DIR_ENV,
    EVALUATION_CORPORA,
    SPLITS,
    clear_cache,
    corpus_schema,
    data_dir,
    has_sentence_view,
    is_labeled,
    load_corpus,
    load_sentences,
    without_test_overlap,
)
from llmner.data_processing.corpora.text import read_plain_text

__all__ = [
    "CORPORA", "CORPUS_NAMES", "DATA_DIR_ENV", "EVALUATION_CORPORA", "FORMATS", "NCBI_DISEASE_CLASSES", "PLAIN_TEXT", "SPLITS",
    "check_writable", "clear_cache", "corpus_schema", "data_dir", "get_format", "guess_format", "guess_output_format",
    "has_sentence_view", "is_labeled", "load_corpus", "load_sentences", "without_test_overlap", "read_bc2gm", "read_bioc", "read_bioc_json", "read_brat", "read_cblue", "read_conll", "read_documents",
    "read_genia_jsonl", "read_jsonl", "read_plain_text", "read_pubtator", "read_result_records", "write_bc2gm", "write_bioc",
    "write_bioc_json", "write_brat", "write_cblue", "write_conll",
    "write_documents", "write_genia_jsonl", "write_jsonl", "write_pubtator", "write_result_records",
]
