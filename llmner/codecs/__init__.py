"""Symbolic tagging codecs: how entities are written in the generator's target text.

``get_codec(name)`` returns one: ``inline`` (default, ``<Type>mention</Type>``), ``lines`` (the
LLMNER seed format) or ``json`` (BioSelectTune's ``[{"entity": ..., "name": ...}]``).
"""

from __future__ import annotations

from importlib import import_module

from llmner.codecs.base import Codec, DecodeResult, Diagnostics, EncodeResult
from llmner.errors import ConfigError

DEFAULT_CODEC = "inline"
# name -> (module, class); modules are imported on first use.
_REGISTRY: dict[str, tuple[str, str]] = {
    "inline": ("llmner.codecs.inline", "InlineCodec"),
    "lines": ("llmner.codecs.lines", "LinesCodec"),
    "json": ("llmner.codecs.json_codec", "JsonCodec"),
}
CODEC_NAMES: tuple[str, ...] = tuple(_REGISTRY)


def get_codec(name: str = DEFAULT_CODEC) -> Codec:
    """A codec by name; ConfigError naming the known codecs for anything else."""
    try:
        module_name, class_name = _REGISTRY[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown codec {name!r} (known: {', '.join(CODEC_NAMES)})") from None
    return getattr(import_module(module_name), class_name)()


__all__ = ["CODEC_NAMES", "DEFAULT_CODEC", "Codec", "DecodeResult", "Diagnostics", "EncodeResult", "get_codec"]
