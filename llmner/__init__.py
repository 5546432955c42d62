"""llmner: biomedical named entity recognition with an LLM symbolic tagger and an entity selector.

    import llmner

    nlp = llmner.load()                 # the default model bundle (or llmner.load("path/to/bundle"))
    doc = nlp("BRCA1 mutations cause breast cancer.")
    for ent in doc.entities:
        print(ent.text, ent.start, ent.end, ent.type, ent.score, ent.normalized_id)
    docs = list(nlp.pipe(["first text", {"id": "n2", "text": "second"}], batch_size=16))

The library has no Celery and no Redis; the streaming adapter lives in ``workers``.
"""

from __future__ import annotations

from pathlib import Path

from llmner.doc import Candidate, Chunk, Document, Entity, ResultRecord
from llmner.errors import LlmnerError, ValidationError
from llmner.pipeline import Pipeline, PipelineConfig
from llmner.schema import EntitySchema, EntityType, get_schema

__version__ = "0.1.0"
__all__ = ["Candidate", "Chunk", "Document", "Entity", "EntitySchema", "EntityType", "LlmnerError", "Pipeline", "PipelineConfig", "ResultRecord",
           "ValidationError", "__version__", "get_schema", "load"]


def load(path: str | Path | None = None, config: PipelineConfig | None = None, verbose: bool = False) -> Pipeline:
    """The pipeline of the model bundle at ``path`` (None: the default bundle); call it on a text.
    Library warnings and loading bars are hidden inside llmner's calls unless ``verbose``."""
    from llmner.quiet import library_noise_hidden

    with library_noise_hidden(verbose):
        pipe = Pipeline.from_bundle(path, config)
    pipe.verbose = verbose
    return pipe
