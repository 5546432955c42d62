"""``llmner bundle``: assemble a model bundle from a trained generator and an optional selector.

``llmner bundle --generator runs/gen --selector runs/sel --output llmner/bundles/default`` copies
both directories (without their checkpoints) and writes ``bundle.json``; ids default to the
generator card's name and the selector's model id. The bundle's size is printed, because a bundle
that ships inside the package must stay small.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from llmner.bundle import MAX_SHIPPED_BUNDLE_BYTES, PROPOSERS_DIR, ProposerEntry
from llmner.cli.output import say
from llmner.errors import ConfigError, DataNotFoundError


def register(app: typer.Typer) -> None:
    app.command("bundle")(bundle_command)


def bundle_command(
    generator: Annotated[Path, typer.Option("--generator", help="generator directory written by `llmner train generator`")],
    output: Annotated[Path, typer.Option("--output", "-o", help="bundle directory to write")],
    selector: Annotated[Path | None, typer.Option("--selector", help="selector directory written by `llmner train selector`")] = None,
    name: Annotated[str, typer.Option("--name", help="bundle name (written into results)")] = "llmner-bundle",
    decoding_mode: Annotated[str, typer.Option("--decoding-mode", help="free, constrained or speculative")] = "speculative",
    threshold: Annotated[float | None, typer.Option("--threshold", help="selector threshold (default: the selector's dev-tuned one)")] = None,
    selector_language: Annotated[list[str] | None, typer.Option("--selector-language", help="language the selector judges (repeatable; default: all); other languages keep the generator's candidates")] = None,
    default_schema: Annotated[list[str] | None, typer.Option("--default-schema", help="LANG=SCHEMA: schema of documents in LANG that name none (repeatable), e.g. en=bc5cdr")] = None,
    prompt_schema: Annotated[list[str] | None, typer.Option("--prompt-schema", help="SCHEMA=PROMPTED: generate SCHEMA's documents under PROMPTED's type names and report SCHEMA's (repeatable), e.g. clinical_zh=cmeee")] = None,
    consistency: Annotated[bool, typer.Option("--consistency/--no-consistency", help="tag every recurrence of a string the generator tagged at half its places or more (the setting chosen on dev for the shipped bundle; check it on your dev data with benchmarks/consistency.py)")] = False,
    reader: Annotated[Path | None, typer.Option("--reader", help="reader directory written by `llmner train reader` (its run's reader/)")] = None,
    reader_schema: Annotated[list[str] | None, typer.Option("--reader-schema", help="schema (as prompted, e.g. cmeee) the reader tags instead of the generator and selector (repeatable)")] = None,
    reader_threshold: Annotated[float, typer.Option("--reader-threshold", help="the reader's spans are kept from this span score")] = 0.0,
    proposer: Annotated[list[str] | None, typer.Option("--proposer", help="SCHEMA[,SCHEMA...]=DIR: the reader in DIR (a run's reader/) proposes spans under those schemas (as prompted, e.g. bc5cdr), judged by the selector (repeatable: one proposer per schema)")] = None,
    proposer_threshold: Annotated[float | None, typer.Option("--proposer-threshold", help="every proposer's spans are proposed from this span score (default: each reader's threshold_on_held_out, from its run's training_card.json, chosen by benchmarks/reader_choice.py)")] = None,
    notes: Annotated[str, typer.Option("--notes", help="free text kept in bundle.json")] = "",
    max_bytes: Annotated[int, typer.Option("--max-bytes", help="refuse a bundle larger than this (0: no limit)")] = MAX_SHIPPED_BUNDLE_BYTES,
) -> None:
    """Assemble a model bundle (generator + optional selector and reader + bundle.json)."""
    from llmner.bundle import (
        BundleManifest,
        assembled_size_bytes,
        bundle_size_bytes,
        load_manifest,
        save_bundle,
    )
    from llmner.decoding.consistency import ConsistencyConfig
    from llmner.schema import get_schema, type_correspondence

    if decoding_mode not in ("free", "constrained", "speculative"):
        raise ConfigError(f"--decoding-mode must be free, constrained or speculative, got {decoding_mode!r}")
    if not (generator / "generator_config.json").is_file():
        raise DataNotFoundError(f"--generator {generator}: generator_config.json not found (not a trained generator)")
    if selector is not None and not (selector / "selector_config.json").is_file():
        raise DataNotFoundError(f"--selector {selector}: no selector config found (not a trained selector)")
    if reader is not None and not (reader / "reader_config.json").is_file():
        raise DataNotFoundError(f"--reader {reader}: reader_config.json not found (not a trained reader)")
    if bool(reader_schema) != (reader is not None):
        raise ConfigError("--reader and --reader-schema go together: the reader tags the schemas named")
    proposers = [_proposer_entry(item, proposer_threshold) for item in proposer or []]
    if proposers and selector is None:
        raise ConfigError("--proposer needs --selector: the selector judges what the proposer proposes")
    defaults = {}
    for item in default_schema or []:
        language, _, schema_name = item.partition("=")
        if not language or not schema_name:
            raise ConfigError(f"--default-schema {item!r}: expected LANG=SCHEMA, e.g. en=bc5cdr")
        defaults[language] = schema_name
    prompts = {}
    for item in prompt_schema or []:
        requested, _, prompted = item.partition("=")
        if not requested or not prompted:
            raise ConfigError(f"--prompt-schema {item!r}: expected SCHEMA=PROMPTED, e.g. clinical_zh=cmeee")
        type_correspondence(get_schema(requested), get_schema(prompted))   # refused now, not at load
        prompts[requested] = prompted
    card = _read_json(generator / "training_card.json")
    selector_card = _read_json(selector / "training_card.json") if selector is not None else {}
    manifest = BundleManifest(name=name, generator_id=str(card.get("name") or generator.name),
                              selector_id=str(selector_card.get("model_id") or (selector.name if selector else "")),
                              decoding_mode=decoding_mode, selector_threshold=threshold, notes=notes,
                              selector_languages=list(selector_language or []), default_schemas=defaults,
                              prompt_schemas=prompts,
                              consistency=ConsistencyConfig().to_dict() if consistency else None,
                              sentences_per_chunk=int((card.get("training") or {}).get("sentences_per_chunk", 1)),
                              reader_id=reader.parent.name if reader is not None else "",   # the run directory's name
                              reader_schemas=list(reader_schema or []), reader_threshold=reader_threshold,
                              proposers=[entry for entry, _ in proposers])
    BundleManifest.from_dict(manifest.to_dict(), "the bundle's manifest")   # refused before anything is written
    proposer_dirs = {entry.directory: source for entry, source in proposers}
    planned = assembled_size_bytes(output, generator, selector, manifest, reader, proposer_dirs)
    if max_bytes and planned > max_bytes:
        # Refused before anything is written: a bundle left on disk would load, whatever this said.
        raise ConfigError(f"bundle {output} would be {planned / 1e6:.1f} MB, over --max-bytes {max_bytes / 1e6:.1f} MB; "
                          f"nothing written")
    root = save_bundle(output, generator, selector, manifest, reader, proposer_dirs)
    load_manifest(root)          # what the pipeline will read back
    size = bundle_size_bytes(root)
    say(f"bundle {root}: {size / 1e6:.1f} MB, generator {manifest.generator_id}, "
        f"selector {manifest.selector_id or 'none'}, decoding {decoding_mode}")


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _proposer_entry(item: str, threshold: float | None) -> tuple[ProposerEntry, Path]:
    """One ``--proposer SCHEMA[,SCHEMA...]=DIR``: its manifest entry (the reader copied to
    ``proposers/<first schema>``, its id the run directory's name for a run's ``reader/``, else the
    directory's) and the reader directory."""
    schemas, _, where = item.partition("=")
    names = [name.strip() for name in schemas.split(",") if name.strip()]
    if not names or not where:
        raise ConfigError(f"--proposer {item!r}: expected SCHEMA[,SCHEMA...]=DIR, e.g. bc5cdr=runs/reader-bc5cdr/reader")
    source = Path(where)
    if not (source / "reader_config.json").is_file():
        raise DataNotFoundError(f"--proposer {item}: {source}/reader_config.json not found (not a trained reader)")
    if threshold is None:
        cards = [source / "training_card.json", source.parent / "training_card.json"]
        card = next((_read_json(c) for c in cards if c.is_file()), {})
        threshold = card.get("threshold_on_held_out")
        if threshold is None:
            raise ConfigError(f"--proposer {item}: its training card names no threshold_on_held_out; choose one with "
                              f"benchmarks/reader_choice.py --run RUN or pass --proposer-threshold")
    run = source.parent.name if source.name == "reader" else source.name     # a run's reader/, or a reader of its own
    entry = ProposerEntry(f"{PROPOSERS_DIR}/{names[0]}", run, names, float(threshold))
    return entry, source
