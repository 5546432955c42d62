"""The ``inline`` codec (default): one copy of the text with typed open/close markers.

Format: ``<Type>`` opens and ``</Type>`` closes a mention; nesting by nesting, e.g.
``<DNA><protein>IL-2</protein> promoter</DNA>``. Source characters ``&``, ``<`` and ``>`` are
written as ``&amp;``, ``&lt;`` and ``&gt;`` so that every literal ``<`` in a target is a marker
and any source text (including text that looks like a marker) round-trips.
"""

from __future__ import annotations

ESCAPES: dict[str, str] = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
UNESCAPES: dict[str, str] = {v: k for k, v in ESCAPES.items()}


def escape_text(text: str) -> str:
    """The source text as it appears in an inline target."""
    if not any(c in text for c in ESCAPES):
        return text
    return "".join(ESCAPES.get(c, c) for c in text)


def escaped_pieces(text: str) -> list[str]:
    """One escaped piece per source character (a piece is atomic: no marker may split it)."""
    return [ESCAPES.get(c, c) for c in text]


def open_marker(entity_type: str) -> str:
    return f"<{entity_type}>"


def close_marker(entity_type: str) -> str:
    return f"</{entity_type}>"
