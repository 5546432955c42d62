"""One self-contained HTML page of tagged documents (``llmner view``).

No network: styles and the few lines of script are inline and a Content-Security-Policy forbids
every fetch. All text (document text, ids, types, identifiers) is escaped; types never become CSS
(each gets a class ``t<n>``), so a note holding ``<script>`` shows it as text.

Entities are drawn as nested spans: an entity inside another is a span inside the other's span,
with a smaller padding so that both borders show. Overlapping entities that do not nest (A covers
[0, 10), B [5, 15)) are cut where the outer one closes; the pieces of B share ``data-entity``. The
page is built here, not in the browser, so thousands of entities cost the browser one parse.
"""

from __future__ import annotations

import heapq
import html
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from llmner.doc import Document, Entity

# Distinct hues for up to 12 types, then repeats with another lightness.
_HUES = (210, 0, 120, 35, 280, 170, 320, 60, 240, 20, 90, 190)


@dataclass(slots=True)
class ViewConfig:
    title: str = "llmner entities"
    show_dropped: bool = False       # draw metadata["dropped_candidates"] faintly (from llmner tag --keep-dropped)


def _color(k: int) -> tuple[str, str]:
    hue = _HUES[k % len(_HUES)]
    light = 45 if (k // len(_HUES)) % 2 == 0 else 30
    return f"hsl({hue} 70% {light}%)", f"hsl({hue} 80% {light + 40}% / 0.55)"


def _title(ent: Entity, dropped: bool) -> str:
    parts = [ent.type]
    if ent.score is not None:
        parts.append(f"score {ent.score:.3f}")
    if ent.generator_score is not None:
        parts.append(f"generator {ent.generator_score:.3f}")
    if ent.normalized_id:
        norm = f" ({ent.normalized_score:.2f})" if ent.normalized_score is not None else ""
        parts.append(f"id {ent.normalized_id}{norm}")
    elif ent.normalized_score is not None:
        parts.append("id NIL")
    if dropped:
        parts.append("dropped by the selector")
    return " · ".join(parts)


def render_text(text: str, entities: Sequence[Entity], type_class: dict[str, int],
                dropped: Sequence[Entity] = ()) -> str:
    """``text`` as escaped HTML with one (possibly cut) span per entity, nested by containment."""
    all_ents = [(e, False) for e in entities] + [(e, True) for e in dropped]
    heap = [(e.start, -e.end, i, e.end) for i, (e, _) in enumerate(all_ents) if 0 <= e.start < e.end <= len(text)]
    heapq.heapify(heap)
    out: list[str] = []
    pos = 0
    stack: list[int] = []     # end offsets of the open spans, innermost last

    def emit(upto: int) -> None:
        nonlocal pos
        if upto > pos:
            out.append(html.escape(text[pos:upto]))
            pos = upto

    while heap:
        start, _, i, end = heapq.heappop(heap)
        while stack and stack[-1] <= start:
            emit(stack.pop())
            out.append("</span>")
        emit(start)
        cont = start != all_ents[i][0].start
        if stack and end > stack[-1]:
            # Crosses the enclosing span's end: draw up to there, the rest becomes a piece of its own.
            heapq.heappush(heap, (stack[-1], -end, i, end))
            end = stack[-1]
        ent, is_dropped = all_ents[i]
        cls = f"ent t{type_class[ent.type]}" + (" dropped" if is_dropped else "") + (" cont" if cont else "")
        depth = len(stack)
        attrs = {"class": cls, "data-entity": str(i), "data-type": ent.type, "data-depth": str(depth),
                 "title": _title(ent, is_dropped)}
        if ent.score is not None:
            attrs["data-score"] = f"{ent.score:.4f}"
        if ent.normalized_id:
            attrs["data-id"] = ent.normalized_id
        if end == ent.end:
            attrs["data-label"] = ent.type + (f" {ent.normalized_id}" if ent.normalized_id else "")
        out.append("<span " + " ".join(f'{k}="{html.escape(v, quote=True)}"' for k, v in attrs.items()) + ">")
        stack.append(end)
    while stack:
        emit(stack.pop())
        out.append("</span>")
    emit(len(text))
    return "".join(out)


def _dropped_of(doc: Document) -> list[Entity]:
    raw = doc.metadata.get("dropped_candidates") or []
    return [Entity.from_dict(d, f"document {doc.id!r} dropped candidate #{i}") for i, d in enumerate(raw)]


_CSS = """
body{font-family:system-ui,"Noto Sans","Noto Sans CJK SC","WenQuanYi Zen Hei","Microsoft YaHei",sans-serif;margin:1.5em;color:#222;max-width:70em}
h1{font-size:1.3em}h2{font-size:1.05em;margin:1.6em 0 .3em}
.legend span.key{display:inline-block;margin:0 .8em .3em 0;padding:0 .4em;border:2px solid var(--c);background:var(--b);border-radius:3px}
.doc{border-top:1px solid #ccc;padding-top:.4em}
.counts{font-size:.85em;color:#555;margin:.2em 0 .6em}
.text{white-space:pre-wrap;line-height:2.6;font-size:15px}
.ent{border:2px solid var(--c);background:var(--b);border-radius:4px;padding:6px 1px;box-decoration-break:clone;-webkit-box-decoration-break:clone}
.ent[data-depth="1"]{padding:3px 1px}.ent[data-depth="2"]{padding:1px 1px}.ent[data-depth="3"]{padding:0 1px}
.ent[data-label]::after{content:attr(data-label);font-size:9px;vertical-align:super;color:var(--c);margin-left:2px;font-weight:600;white-space:nowrap}
.ent.cont{border-left-style:dotted}
.ent.dropped{border-style:dashed;background:none;color:#9a9a9a}.ent.dropped::after{opacity:.6}
.ent.dropped .ent:not(.dropped){color:#222}
body.hide-dropped .ent.dropped{border-color:transparent}body.hide-dropped .ent.dropped::after{content:none}
"""

_SCRIPT = """
document.body.dataset.ready = "1";
var box = document.getElementById("toggle-dropped");
if (box) box.addEventListener("change", function () { document.body.classList.toggle("hide-dropped", !box.checked); });
"""


def render_html(docs: Sequence[Document], config: ViewConfig | None = None) -> str:
    """The whole page for ``docs``: legend, then per document its counts and its text."""
    config = config or ViewConfig()
    dropped = {d.id: _dropped_of(d) if config.show_dropped else [] for d in docs}
    types = sorted({e.type for d in docs for e in [*d.entities, *dropped[d.id]]})
    type_class = {t: k for k, t in enumerate(types)}
    total = Counter(e.type for d in docs for e in d.entities)
    css_vars = "".join(f".t{k}{{--c:{_color(k)[0]};--b:{_color(k)[1]}}}" for k in range(len(types)))
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        ("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
        "script-src 'unsafe-inline'; img-src data:\">"),
        f"<title>{esc(config.title)}</title><style>{_CSS}{css_vars}</style></head><body>",
        f"<h1>{esc(config.title)}</h1>",
        (f'<p class="summary">{len(docs)} documents, {sum(total.values())} entities, '
        f"{sum(1 for d in docs for e in d.entities if e.normalized_id)} with an identifier</p>"),
        '<div class="legend" id="legend">' + "".join(
            f'<span class="key t{type_class[t]}" data-type="{esc(t, quote=True)}">{esc(t)} {total.get(t, 0)}</span>' for t in types) + "</div>",
    ]
    if config.show_dropped:
        n = sum(len(v) for v in dropped.values())
        parts.append(f'<label><input type="checkbox" id="toggle-dropped" checked> show the {n} candidates the selector dropped (faint, dashed)</label>')
    for d in docs:
        counts = Counter(e.type for e in d.entities)
        lang = "zh" if d.language == "zh" else "en"
        count_text = ", ".join(f"{esc(t)} {n}" for t, n in sorted(counts.items())) or "no entities"
        linked = sum(1 for e in d.entities if e.normalized_id)
        extra = f"; {len(dropped[d.id])} dropped candidates" if config.show_dropped else ""
        parts.append(f'<section class="doc" data-doc="{esc(d.id, quote=True)}"><h2>{esc(d.id)}</h2>'
                     f'<div class="counts">{len(d.entities)} entities ({count_text}); {linked} with an identifier{extra}</div>'
                     f'<div class="text" lang="{lang}">{render_text(d.text, d.entities, type_class, dropped[d.id])}</div></section>')
    parts.append(f"<script>{_SCRIPT}</script></body></html>")
    return "\n".join(parts)
