"""``llmner normalizer build``: a dictionary normalizer from identifier-annotated corpora and vocabularies.

``llmner normalizer build --corpus ncbi_disease --corpus bc5cdr --vocabulary Disease=mesh
--vocabulary Chemical=mesh --rule Chemical=strip_salts --bundle llmner/bundles/default`` writes
``<bundle>/normalizer/``: one
dictionary per entity type from the gold mentions of the corpora's train and dev splits (never
test), plus the named vocabularies each type loads at run time. ``--output DIR`` writes it elsewhere.
``--neighbour Disease=encoder --encoder runs/synonym-encoder`` makes step 4 of a type use sentence
embeddings (``rerank``: the n-gram shortlist reordered by them) and copies that encoder (a
``save_pretrained`` directory, e.g. from ``benchmarks/train_synonym_encoder.py``) into the normalizer;
``--threshold`` is then that type's cosine threshold.

``llmner normalizer warm [BUNDLE]`` encodes the names of the bundle's normalizer (the default bundle
when omitted) whose step 4 encodes every name, and stores them where a worker's start reads them
(``LLMNER_NORMALIZER_EMBEDDINGS``, default ``$LLMNER_CACHE_DIR/normalizer-embeddings``): the images
run it at build time, so that no worker pays for it at start.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llmner.cli.output import say
from llmner.errors import ConfigError, DataNotFoundError

# Matching rules a type can switch on (DictionaryConfig fields; benchmarks/results/normalization.md
# has what each did on dev).
RULES = ("strip_salts", "strip_modifiers", "disease_suffixes", "use_document", "wider_tie_break",
         "single_letter_abbreviations", "organ_disease_words", "salt_free_names")

app = typer.Typer(help="Entity normalizers (identifiers for entities).", no_args_is_help=True)


def register(main: typer.Typer) -> None:
    main.add_typer(app, name="normalizer")


@app.command("build")
def build(
    corpus: Annotated[list[str], typer.Option("--corpus", help="corpus whose identifier-annotated mentions go in (repeatable)")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="normalizer directory to write")] = None,
    bundle: Annotated[Path | None, typer.Option("--bundle", help="write into BUNDLE/normalizer instead of --output")] = None,
    split: Annotated[list[str] | None, typer.Option("--split", help="splits to read (repeatable; default train and dev)")] = None,
    type_: Annotated[list[str] | None, typer.Option("--type", help="entity types to build (repeatable; default: every type with identifiers)")] = None,
    vocabulary: Annotated[list[str] | None, typer.Option("--vocabulary", help="TYPE=NAME: a vocabulary (mesh, or a .csv/.json/.obo file) loaded for TYPE (repeatable)")] = None,
    threshold: Annotated[float, typer.Option("--threshold", help="n-gram cosine below which the answer is NIL")] = 0.7,
    head_backoff: Annotated[list[str] | None, typer.Option("--head-backoff", help="TYPE: try the mention's head before the n-gram neighbour (repeatable)")] = None,
    rule: Annotated[list[str] | None, typer.Option("--rule", help=f"TYPE=RULE: a matching rule for TYPE, one of {', '.join(RULES)} (repeatable)")] = None,
    document_threshold: Annotated[float, typer.Option("--document-threshold", help="Dice below which the document step does not link")] = 0.6,
    neighbour: Annotated[list[str] | None, typer.Option("--neighbour", help="TYPE=ngram|encoder|rerank: step 4 of TYPE (repeatable)")] = None,
    encoder: Annotated[Path | None, typer.Option("--encoder", help="encoder directory copied into the normalizer for --neighbour encoder/rerank (default: the packaged MiniLM)")] = None,
    notes: Annotated[str, typer.Option("--notes", help="free text kept in normalizer.json")] = "",
) -> None:
    """Build a dictionary normalizer (one dictionary per entity type)."""
    from llmner.bundle import NORMALIZER_DIR
    from llmner.normalization import (
        NormalizerSpec,
        TypeSpec,
        build_from_corpora,
        save_normalizer,
    )

    if (output is None) == (bundle is None):
        raise ConfigError("pass exactly one of --output and --bundle")
    splits = split or ["train", "dev"]
    if "test" in splits:
        raise ConfigError("a normalizer is never built from a test split (its scores would be meaningless)")
    dictionaries, sources = build_from_corpora(corpus, splits, type_)
    spec = NormalizerSpec(sources=sources, notes=notes)
    for item in vocabulary or []:
        etype, _, name = item.partition("=")
        if not etype or not name:
            raise ConfigError(f"--vocabulary {item!r}: expected TYPE=NAME, e.g. Disease=mesh")
        spec.types.setdefault(etype, TypeSpec(ngram_threshold=threshold)).vocabularies.append(name)
    for etype in dictionaries:
        spec.types.setdefault(etype, TypeSpec(ngram_threshold=threshold))
    for etype in head_backoff or []:
        spec.types.setdefault(etype, TypeSpec(ngram_threshold=threshold)).use_head_backoff = True
    for item in rule or []:
        etype, _, name = item.partition("=")
        if not etype or name not in RULES:
            raise ConfigError(f"--rule {item!r}: expected TYPE=RULE with RULE one of {', '.join(RULES)}")
        setattr(spec.types.setdefault(etype, TypeSpec(ngram_threshold=threshold)), name, True)
    if not 0.0 <= document_threshold <= 1.0:
        raise ConfigError("--document-threshold must be in [0, 1]")
    for tspec in spec.types.values():
        tspec.document_threshold = document_threshold
    from llmner.normalization.dictionary import NEIGHBOURS

    for item in neighbour or []:
        etype, _, name = item.partition("=")
        if not etype or name not in NEIGHBOURS:
            raise ConfigError(f"--neighbour {item!r}: expected TYPE=NAME with NAME one of {', '.join(NEIGHBOURS)}")
        tspec = spec.types.setdefault(etype, TypeSpec(ngram_threshold=threshold))
        tspec.neighbour = name
        if encoder is not None and name != "ngram":
            tspec.encoder = "encoder"
    if encoder is not None and not (encoder / "config.json").is_file():
        raise ConfigError(f"--encoder {encoder}: not a save_pretrained directory (no config.json)")
    if not spec.types:
        raise ConfigError(f"no identifier-annotated mentions in {', '.join(corpus)} and no --vocabulary: nothing to build")
    target = bundle / NORMALIZER_DIR if bundle is not None else output
    assert target is not None
    save_normalizer(target, dictionaries, spec)
    if any(t.encoder == "encoder" for t in spec.types.values()):
        import shutil

        shutil.rmtree(target / "encoder", ignore_errors=True)
        shutil.copytree(encoder, target / "encoder")   # type: ignore[arg-type]
    for etype, tspec in spec.types.items():
        d = dictionaries.get(etype)
        typer.echo(f"{etype}: {len(d) if d else 0} names, {len(d.identifiers()) if d else 0} identifiers from "
                   f"{', '.join(sources)}; vocabularies: {', '.join(tspec.vocabularies) or 'none'}")
    typer.echo(f"normalizer -> {target}")


@app.command("warm")
def warm(
    bundle: Annotated[Path | None, typer.Argument(help="model bundle (or normalizer folder) whose normalizer to warm; default: the default bundle")] = None,
) -> None:
    """Encode and store the names' embeddings of a bundle's normalizer, so that a fresh worker starts fast."""
    from llmner.bundle import NORMALIZER_DIR, default_bundle_path
    from llmner.normalization import embeddings_dir, warm_embeddings
    from llmner.normalization.store import SPEC_NAME

    if bundle is None:
        bundle = default_bundle_path()
        if bundle is None:
            raise DataNotFoundError("no default bundle is installed: name a bundle, `llmner normalizer warm BUNDLE`")
    folder = bundle if (bundle / SPEC_NAME).is_file() else bundle / NORMALIZER_DIR
    if not (folder / SPEC_NAME).is_file():
        raise DataNotFoundError(f"{bundle} has no normalizer ({NORMALIZER_DIR}/{SPEC_NAME})")
    stored = warm_embeddings(folder)
    if not stored:
        say(f"{folder}: no type encodes its names (step 4 by character n-grams); nothing to store")
        return
    for s in stored:
        done = f"encoded in {s.seconds:.1f} s" if s.encoded else f"already stored (read back in {s.seconds:.1f} s)"
        say(f"{s.type}: {s.names:,} names {done} -> {s.file}")
    say(f"normalizer embeddings in {embeddings_dir()}")
