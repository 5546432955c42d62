"""``llmner tag INPUT``: tag documents with a model bundle and write the entities.

Input formats (``--format``, guessed from the extension when left out): ``text`` (the whole file is
one document, or one document per line with ``--lines``), ``jsonl``, ``pubtator``, ``bioc``,
``brat`` (a directory). Gold entities in the input are ignored.

Output formats (``--output-format``, from the extension of ``--output`` when left out):

- ``jsonl``: llmner documents (readable by ``llmner eval --pred``) with entity scores, and the
  model ids and timings in ``metadata``;
- ``bioc``: BioC XML; each annotation carries a ``score`` infon and the collection carries
  ``model.<stage>`` infons;
- ``pubtator``: entities only (the format has no place for scores or model ids; use jsonl or bioc).

``--normalize`` links entities to identifiers with the bundle's normalizer (an error when the bundle
has none): ``normalized_id`` / ``normalized_score`` in jsonl, the sixth column in pubtator (empty
for NIL), the ``identifier`` infon in bioc. ``--keep-dropped`` (jsonl) keeps the candidates the
selector dropped in ``metadata["dropped_candidates"]``, for ``llmner view --dropped``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llmner.doc import Document, ResultRecord
from llmner.errors import ConfigError, DataNotFoundError

INPUT_FORMATS = ("text", "jsonl", "pubtator", "bioc", "brat")
OUTPUT_FORMATS = ("jsonl", "pubtator", "bioc")
_EXT = {".txt": "text", ".jsonl": "jsonl", ".pubtator": "pubtator", ".xml": "bioc", ".bioc": "bioc"}


def read_input(path: Path, fmt: str | None, lines: bool = False, language: str = "en") -> list[Document]:
    if not path.exists():
        raise DataNotFoundError(f"input not found: {path}")
    fmt = fmt or ("brat" if path.is_dir() else _EXT.get(path.suffix.lower()))
    if fmt is None:
        raise ConfigError(f"cannot guess the format of {path}; pass --format ({', '.join(INPUT_FORMATS)})")
    if fmt not in INPUT_FORMATS:
        raise ConfigError(f"unknown input format {fmt!r} (expected one of {', '.join(INPUT_FORMATS)})")
    if fmt == "text":
        text = path.read_text(encoding="utf-8")
        if lines:
            return [Document(f"{path.stem}-{i}", line, language) for i, line in enumerate(text.splitlines(), 1) if line.strip()]
        return [Document(path.stem, text, language)]
    from llmner.data_processing.corpora import read_documents

    docs = read_documents(path, fmt)
    for d in docs:
        d.entities = []
    return docs


def write_output(docs: list[Document], records: list[ResultRecord], path: Path, fmt: str, model_ids: dict[str, str]) -> None:
    out_docs = []
    for d, r in zip(docs, records):
        meta = dict(d.metadata)
        if fmt == "jsonl":
            meta.update({"model_ids": r.model_ids, "timings_ms": r.timings_ms, "chunk_count": r.chunk_count})
        out_docs.append(Document(d.id, d.text, d.language, meta, list(r.entities)))
    from llmner.data_processing.corpora import write_documents

    path.parent.mkdir(parents=True, exist_ok=True)
    write_documents(out_docs, path, fmt)
    if fmt == "bioc":
        _add_bioc_scores(path, out_docs, model_ids)


def _add_bioc_scores(path: Path, docs: list[Document], model_ids: dict[str, str]) -> None:
    """Add a ``score`` infon to each annotation and the model ids to the collection (post-processing
    the corpora writer's XML, which has no field for them)."""
    import xml.etree.ElementTree as ET

    tree = ET.parse(path)
    root = tree.getroot()
    anchor = root.find("key")
    index = list(root).index(anchor) + 1 if anchor is not None else 0
    for stage, model_id in sorted(model_ids.items()):
        infon = ET.Element("infon", key=f"model.{stage}")
        infon.text = model_id
        root.insert(index, infon)
        index += 1
    by_id = {d.id: d for d in docs}
    for bdoc in root.iter("document"):
        doc = by_id.get(bdoc.findtext("id", ""))
        if doc is None:
            continue
        scores = {(e.start, e.end, e.type): e.score for e in doc.entities}
        for ann in bdoc.iter("annotation"):
            loc = ann.find("location")
            etype = next((i.text for i in ann.findall("infon") if i.get("key") == "type"), None)
            if loc is None or etype is None:
                continue
            start = int(loc.get("offset", "0"))
            # BioC offsets are document offsets here (single or tiling passages written by write_bioc).
            key = (start, start + int(loc.get("length", "0")), etype)
            if scores.get(key) is not None:
                infon = ET.Element("infon", key="score")
                infon.text = f"{scores[key]:.4f}"
                ann.insert(0, infon)
    tree.write(path, encoding="utf-8", xml_declaration=True)


def tag(
    input: Annotated[Path, typer.Argument(help="input file (or BRAT directory)")],
    output: Annotated[Path, typer.Option("--output", "-o", help="file to write")],
    fmt: Annotated[str | None, typer.Option("--format", help=f"input format: {', '.join(INPUT_FORMATS)} (default: from the extension)")] = None,
    output_format: Annotated[str | None, typer.Option("--output-format", help=f"{', '.join(OUTPUT_FORMATS)} (default: from --output's extension, else jsonl)")] = None,
    model: Annotated[Path | None, typer.Option("--model", help="model bundle directory (default: the shipped default bundle)")] = None,
    schema: Annotated[str | None, typer.Option("--schema", help="schema name or file for every document (default: per language)")] = None,
    lines: Annotated[bool, typer.Option("--lines", help="text input: one document per line")] = False,
    language: Annotated[str, typer.Option("--language", help="language of text input (en or zh)")] = "en",
    selector_backend: Annotated[str, typer.Option("--selector-backend", help="onnx, torch or none")] = "onnx",
    batch_documents: Annotated[int, typer.Option("--batch-documents", help="documents per pipeline batch")] = 8,
    normalize: Annotated[bool, typer.Option("--normalize", help="link entities to identifiers with the bundle's normalizer")] = False,
    keep_dropped: Annotated[bool, typer.Option("--keep-dropped", help="jsonl: keep the selector's dropped candidates in metadata (llmner view --dropped)")] = False,
) -> None:
    """Tag documents: chunk -> generate -> select -> merge; writes entities, scores and model ids."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from llmner.pipeline import Pipeline, PipelineConfig

    out_fmt = output_format or {".xml": "bioc", ".bioc": "bioc", ".pubtator": "pubtator"}.get(output.suffix.lower(), "jsonl")
    if out_fmt not in OUTPUT_FORMATS:
        raise ConfigError(f"unknown output format {out_fmt!r} (expected one of {', '.join(OUTPUT_FORMATS)})")
    if batch_documents < 1:
        raise ConfigError(f"--batch-documents must be >= 1, got {batch_documents}")
    docs = read_input(input, fmt, lines, language)
    if schema:
        for d in docs:
            d.metadata["schema"] = schema
    if keep_dropped and out_fmt != "jsonl":
        raise ConfigError("--keep-dropped needs jsonl output (the other formats have no place for candidates)")
    pipe = Pipeline.from_bundle(model, PipelineConfig(selector_backend=selector_backend, normalize=normalize))
    for d in docs:
        pipe.schema_for(d)   # fail on an unknown schema before any model time is spent
    console = Console(stderr=True)
    records: list[ResultRecord] = []
    with Progress(TextColumn("tagging"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                  console=console) as bar:
        task = bar.add_task("docs", total=len(docs))
        for i in range(0, len(docs), batch_documents):
            batch = docs[i : i + batch_documents]
            if keep_dropped:
                # One generator pass: every candidate with its score, then the selection the pipeline would make.
                for doc, rec in zip(batch, pipe.process(batch, select=False)):
                    schema = pipe.schema_for(doc)
                    dropped = [e for e in rec.entities if not pipe.keeps(e, schema)]
                    rec.entities = [e for e in rec.entities if pipe.keeps(e, schema)]
                    doc.metadata["dropped_candidates"] = [e.to_dict() for e in dropped]
                    records.append(rec)
            else:
                records.extend(pipe.process(batch))
            bar.update(task, advance=len(batch))
    write_output(docs, records, output, out_fmt, pipe.model_ids)
    n = sum(len(r.entities) for r in records)
    console.print(f"{len(docs)} documents, {n} entities -> {output} ({out_fmt}); models: "
                  + ", ".join(f"{k}={v}" for k, v in pipe.model_ids.items()))
    if pipe.normalizer is not None:
        per_doc = [r.timings_ms.get("normalize", 0.0) for r in records]
        linked = sum(1 for r in records for e in r.entities if e.normalized_id)
        console.print(f"normalization: {linked} of {n} entities linked ({n - linked} NIL or of types without a normalizer); "
                      f"{sum(per_doc) / max(1, len(per_doc)):.1f} ms per document on average")
    if out_fmt == "pubtator":
        console.print("note: PubTator has no field for scores or model ids (use --output-format jsonl or bioc)")


def register(app: typer.Typer) -> None:
    app.command("tag")(tag)
