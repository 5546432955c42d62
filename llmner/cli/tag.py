"""``llmner tag INPUT``: tag documents with a model bundle and write the entities.

Input formats (``--format``; guessed from the content when left out, by
``llmner.data_processing.corpora.guess_format``): any document format of the corpora package
(``jsonl``, ``pubtator``, ``bioc``, ``bioc_json``, ``brat``, ``conll``...) or ``text`` (the whole file
is one document, or one document per line with ``--lines``: ``corpora.read_plain_text``). Gold annotations in the input
(entities, relations) are dropped: the output holds predictions only.

Output formats (``--output-format``; left out, the one the extension of ``--output`` names
(``corpora.guess_output_format``), else the input's own format when it is one of these (PubTator
in ``.txt`` files stays PubTator), else jsonl; the corpora writers write the scores):

- ``jsonl``: llmner documents (readable by every command) with entity scores, and the model ids,
  timings and the input's own metadata in ``metadata``;
- ``bioc`` (XML) / ``bioc_json``: each annotation carries a ``score`` infon and each document its
  ``model.<stage>`` infons;
- ``pubtator``: entities only (the format has no place for scores or model ids; use jsonl or bioc).

``--normalize`` links entities to identifiers with the bundle's normalizer (an error when the bundle
has none): ``normalized_id`` / ``normalized_score`` in jsonl, the sixth column in pubtator (empty
for NIL), the ``identifier`` infon in bioc. ``--keep-dropped`` (jsonl) keeps the candidates the
selector dropped in ``metadata["dropped_candidates"]``, for ``llmner view --dropped``.

Everything that can fail without a model (unreadable input, unknown format or schema, nothing to
tag, an output format that cannot hold the input) fails before any model loads.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from llmner.doc import LANGUAGES, Document, ResultRecord, guess_language
from llmner.errors import ConfigError, ValidationError

OUTPUT_FORMATS = ("jsonl", "pubtator", "bioc", "bioc_json")

console = Console(stderr=True)


def read_input(path: Path, fmt: str | None, lines: bool = False, language: str | None = None) -> list[Document]:
    """The documents to tag, without gold annotations. ``language`` forces every document's
    language; left out, plain text gets the language its script shows and the other formats keep
    their documents' own."""
    from llmner.data_processing.corpora import (
        PLAIN_TEXT,
        guess_format,
        read_documents,
        read_plain_text,
    )

    if language is not None and language not in LANGUAGES:
        raise ConfigError(f"unknown language {language!r} (expected one of {', '.join(LANGUAGES)})")
    fmt = fmt or guess_format(path)
    if fmt == PLAIN_TEXT:
        return read_plain_text(path, one_per_line=lines, language=language)
    if lines:
        raise ConfigError(f"--lines splits plain text, but {path} is {fmt} (pass --format text to read it as text)")
    if fmt == "records":
        raise ValidationError(f"{path} holds result records, which carry no note text: nothing to tag (tag the notes)")
    docs = [d.without_annotations() for d in read_documents(path, fmt)]
    if language is not None:
        for d in docs:
            d.language = language
    return docs


def output_format_for(output: Path, output_format: str | None, input_format: str | None = None) -> str:
    """``--output-format``, else the one ``output``'s extension names, else the input's own format when
    it is one llmner writes (a PubTator ``.txt`` in, PubTator out), else jsonl."""
    from llmner.data_processing.corpora import guess_output_format

    # ``.jsonl`` is not among the extensions guess_output_format maps (`llmner run` writes records there).
    follows_input = input_format in OUTPUT_FORMATS and output.suffix.lower() != ".jsonl"
    fmt = output_format or guess_output_format(output, input_format if follows_input else "jsonl")
    if fmt not in OUTPUT_FORMATS:
        raise ConfigError(f"unknown output format {fmt!r} (expected one of {', '.join(OUTPUT_FORMATS)})")
    return fmt


def warn_on_language_mismatch(docs: list[Document], forced: bool) -> None:
    """A model told the wrong language finds nothing, silently: say so when the script disagrees."""
    mismatched = Counter()
    example: dict[tuple[str, str], str] = {}
    for d in docs:
        seen = guess_language(d.text)
        if seen is not None and seen != d.language:
            mismatched[d.language, seen] += 1
            example.setdefault((d.language, seen), d.id)
    for (given, seen), count in sorted(mismatched.items()):
        fix = "leave --language out to detect it" if forced else f"set \"language\": \"{seen}\" in the input or pass --language {seen}"
        console.print(f"[yellow]warning:[/] {count} document(s) are tagged as {given!r} but written in {seen!r} script "
                      f"(e.g. {example[given, seen]!r}); the model will miss their entities: {fix}",
                      soft_wrap=True, highlight=False)


def write_output(docs: list[Document], records: list[ResultRecord], path: Path, fmt: str) -> None:
    """The predicted documents (input text, predicted entities, model ids) in format ``fmt``."""
    from llmner.data_processing.corpora import write_documents
    from llmner.evaluation.predict import predicted_documents

    write_documents(predicted_documents(docs, records), path, fmt)


def tag(
    input: Annotated[Path, typer.Argument(help="input file (or BRAT directory)")],
    output: Annotated[Path, typer.Option("--output", "-o", help="file to write")],
    fmt: Annotated[str | None, typer.Option("--format", help="input format: text or a document format (default: guessed from the content)")] = None,
    output_format: Annotated[str | None, typer.Option("--output-format", help=f"{', '.join(OUTPUT_FORMATS)} (default: from --output's extension, else the input's format when it is one of these, else jsonl)")] = None,
    model: Annotated[Path | None, typer.Option("--model", help="model bundle directory (default: the shipped default bundle)")] = None,
    schema: Annotated[str | None, typer.Option("--schema", help="schema name or file for every document (default: per language)")] = None,
    lines: Annotated[bool, typer.Option("--lines", help="text input: one document per line")] = False,
    language: Annotated[str | None, typer.Option("--language", help="force the language of every document (en or zh; default: text input is detected from its script, documents keep their own)")] = None,
    selector_backend: Annotated[str, typer.Option("--selector-backend", help="onnx, torch or none")] = "onnx",
    open_bias: Annotated[float | None, typer.Option("--open-bias", help="logit bonus for opening a tag: more entities found, more of them wrong (default: the bundle's per schema, else 0)")] = None,
    batch_documents: Annotated[int, typer.Option("--batch-documents", help="documents per pipeline batch")] = 8,
    normalize: Annotated[bool, typer.Option("--normalize", help="link entities to identifiers with the bundle's normalizer")] = False,
    consistency: Annotated[bool | None, typer.Option("--consistency/--no-consistency", help="tag every recurrence of a string the model tagged at half its places or more (default: as the bundle says; the shipped one does)")] = None,
    reader: Annotated[bool, typer.Option("--reader/--no-reader", help="the bundle's reader tags the schemas it covers (in the shipped bundle: Chinese clinical notes, clinical_zh and cmeee); --no-reader: the generator and selector tag every schema")] = True,
    proposer: Annotated[bool, typer.Option("--proposer/--no-proposer", help="the bundle's proposers (readers) add their spans to the generator's candidates, each under the schemas it covers (in the shipped bundle: bc5cdr, the English default, and ncbi_disease); --no-proposer: the generator's and the selector's spans only")] = True,
    keep_dropped: Annotated[bool, typer.Option("--keep-dropped", help="jsonl: keep the selector's dropped candidates in metadata (llmner view --dropped)")] = False,
    precision: Annotated[str, typer.Option("--precision", help="the generator's matrix multiplies on a CPU: auto (bf16 where the CPU does bf16 natively, about 1.5x faster), fp32 (bit-for-bit the reported runs) or bf16")] = "auto",
) -> None:
    """Tag documents: chunk -> generate -> select (or read, in the schemas the bundle's reader covers) -> merge;
    writes entities, scores and model ids."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from llmner.data_processing.corpora import guess_format
    from llmner.schema import get_schema

    fmt = fmt or guess_format(input)
    out_fmt = output_format_for(output, output_format, fmt)
    if batch_documents < 1:
        raise ConfigError(f"--batch-documents must be >= 1, got {batch_documents}")
    docs = read_input(input, fmt, lines, language)
    if schema:
        get_schema(schema)   # an unknown schema fails here, before any model time is spent
        for d in docs:
            d.metadata["schema"] = schema
    if keep_dropped and out_fmt != "jsonl":
        raise ConfigError("--keep-dropped needs jsonl output (the other formats have no place for candidates)")
    from llmner.data_processing.corpora import check_writable

    check_writable(docs, out_fmt)
    warn_on_language_mismatch(docs, forced=language is not None)

    from llmner.decoding.consistency import ConsistencyConfig
    from llmner.pipeline import Pipeline, PipelineConfig

    # None: the bundle's setting; the flags force the dev-chosen setting on, or the step off.
    chosen = None if consistency is None else ConsistencyConfig() if consistency else ConsistencyConfig.off()
    pipe = Pipeline.from_bundle(model, PipelineConfig(selector_backend=selector_backend, normalize=normalize,
                                                      open_bias=open_bias, consistency=chosen,
                                                      generator_precision=precision, reader=reader,
                                                      proposer=proposer))
    for d in docs:
        pipe.schema_for(d)
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
                    kept = pipe.selection(rec.entities, schema)
                    chosen = {id(e) for e in kept}
                    dropped = [e for e in rec.entities if id(e) not in chosen]
                    rec.entities = kept
                    rec.metadata["dropped_candidates"] = [e.to_dict() for e in dropped]
                    records.append(rec)
            else:
                records.extend(pipe.process(batch))
            bar.update(task, advance=len(batch))
    write_output(docs, records, output, out_fmt)
    n = sum(len(r.entities) for r in records)
    console.print(f"{len(docs)} documents, {n} entities -> {output} ({out_fmt}); models: "
                  + ", ".join(f"{k}={v}" for k, v in pipe.model_ids.items()), soft_wrap=True, highlight=False)
    if pipe.normalizer is not None:
        per_doc = [r.timings_ms.get("normalize", 0.0) for r in records]
        linked = sum(1 for r in records for e in r.entities if e.normalized_id)
        console.print(f"normalization: {linked} of {n} entities linked ({n - linked} NIL or of types without a normalizer); "
                      f"{sum(per_doc) / max(1, len(per_doc)):.1f} ms per document on average", soft_wrap=True, highlight=False)
    if out_fmt == "pubtator":
        console.print("note: PubTator has no field for scores or model ids (use --output-format jsonl or bioc)",
                      soft_wrap=True, highlight=False)


def register(app: typer.Typer) -> None:
    app.command("tag")(tag)
