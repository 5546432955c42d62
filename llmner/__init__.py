"""llmner: biomedical named entity recognition with an LLM symbolic tagger and an entity selector.

The library has no Celery and no Redis; the streaming adapter lives in ``workers``.
"""

from llmner.doc import Document, Entity, ResultRecord
from llmner.errors import LlmnerError, ValidationError
from llmner.schema import EntitySchema, EntityType, get_schema

__version__ = "0.1.0"
__all__ = ["Document", "Entity", "ResultRecord", "EntitySchema", "EntityType", "get_schema", "LlmnerError", "ValidationError", "__version__"]
