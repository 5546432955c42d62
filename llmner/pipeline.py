"""The in-process pipeline: chunk -> generate -> select -> merge to document offsets.

The contract used by the CLI and the workers:

    nlp = llmner.load(path_or_None)                      # the same as Pipeline.from_bundle(path_or_None)
    doc = nlp("text")                                    # Document with predicted entities (str, dict or Document)
    docs = nlp.pipe(iterable, batch_size=8)              # lazily, batch_size inputs per process() call

    pipe = Pipeline.from_bundle(path_or_None)            # None = the default bundle
    chunks = pipe.chunk(doc)                             # list[Chunk], exact offsets
    per_chunk = pipe.infer_chunks(chunks)                # list[ChunkEntities]: CHUNK frame (offsets into chunk.text)
    record = pipe.assemble(doc, chunks, per_chunk)       # ResultRecord in the document frame (merged, deduped, nesting kept)
    records = pipe.process(docs)                         # the three above, batched across documents
    pipe.model_ids                                       # {"generator": ..., "selector": ...}

Details:

- The schema of a document is ``doc.metadata["schema"]`` (a built-in schema name or a schema file)
  when present, else the language default (``PipelineConfig.default_schemas``: en ->
  ``biomedical_en``, zh -> ``cmeee``). ``infer_chunks(chunks, schemas=...)`` takes one schema per
  chunk (or one for all); without it the language default is used.
- Generation is batched over all chunks handed in (across documents); the selector scores every
  candidate of the batch at once. An entity keeps its selector probability in ``Entity.score``;
  candidates below the threshold are dropped (without a selector every candidate is kept, score None).
- Whitespace at the edges of a generated span is trimmed; blank spans are dropped.
- Chunk-level stages (``score_chunks``, ``select``, ``infer_chunks``) work in the chunk frame;
  ``assemble`` moves their entities to the document frame through ``merge_chunk_entities``, the one
  place that shifts and deduplicates.
- ``score_chunks`` returns every candidate with its score, unfiltered (``llmner eval`` scores with
  and without the selector from one generator pass); ``select`` applies the threshold: the bundle's
  per-schema one when ``llmner calibrate`` set it (``threshold_for``), else the global one.
- The reader (``llmner.modeling.reader``, a bundle's ``reader/`` folder): chunks under a schema the bundle
  names in ``reader_schemas`` (as prompted; the shipped bundle: ``cmeee``, so ``clinical_zh`` too) go to the
  reader instead of the generator and selector (``Pipeline.reads``); its spans keep its own span score in
  ``Entity.score`` (``source="reader"``) and are kept from ``reader_threshold``.
  ``PipelineConfig(reader=False)`` never loads it.
- Normalization: when the pipeline has a normalizer (a bundle's ``normalizer/`` folder, loaded unless
  ``PipelineConfig.normalize`` is False), ``assemble`` links every entity of a type it covers to an
  identifier (``Entity.normalized_id``, None for NIL, with ``normalized_score``) and records its time
  as ``timings_ms["normalize"]``; the workers get it through ``assemble`` too.
- ``Pipeline.from_bundle(None)``: the shipped default bundle (``llmner/bundles/default``) if it
  exists, otherwise the base SmolLM2 zero-shot with constrained decoding and no selector (a warning
  is logged: expect low scores).
- ``Pipeline.from_bundle(path, generator_adapter=CHECKPOINT)``: the bundle with the LoRA weights of a
  training checkpoint (``<run>/checkpoints/step-N``, a portable checkpoint or a generator directory of
  the same rank and target modules) in place of its generator's own, to score a run while it trains;
  the generator's model id names both.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmner.data_processing.chunking import (
    ChunkingConfig,
    chunk_document,
    merge_chunk_entities,
)
from llmner.decoding.consistency import ConsistencyConfig, propagate
from llmner.decoding.overlaps import with_proposer_spans
from llmner.decoding.selection import SelectionRule
from llmner.doc import (
    Candidate,
    Chunk,
    ChunkEntities,
    Document,
    Entity,
    ResultRecord,
    guess_language,
    one_per_key,
)
from llmner.errors import ConfigError, ValidationError
from llmner.modeling.precision import check_precision
from llmner.modeling.reader import Reader, ReaderConfig
from llmner.modeling.selector import TokenWindow
from llmner.normalization.base import TypedNormalizer
from llmner.runtime.base import (
    GeneratorRuntime,
    ProposalRequest,
    Proposals,
    RowProbabilities,
    SelectorRuntime,
    TagRequest,
)
from llmner.schema import EntitySchema, get_schema, type_correspondence

log = logging.getLogger(__name__)

SELECTOR_BACKENDS = ("onnx", "torch", "none")


@dataclass(slots=True)
class PipelineConfig:
    chunking: ChunkingConfig = field(default_factory=ChunkingConfig)
    decoding_mode: str | None = None         # None: the bundle's (speculative = constrained output, faster)
    generator_batch_size: int = 8
    selector_backend: str = "onnx"           # onnx (int8 on CPU, fp16 on CUDA) | torch | none
    selector_device: str = "auto"            # auto | cpu | cuda (ONNX backend)
    selector_batch_size: int = 32            # candidates per selector run (torch, ONNX fp16/fp32; int8 runs row by row)
    selector_threshold: float | None = None  # None: the bundle's, else the selector's own
    open_bias: float | None = None           # logit bonus for opening a tag, every schema (None: the bundle's per schema)
    device: str | None = None                # generator device (None: auto)
    merge_adapter: bool = True               # fold the generator's LoRA into its weights (faster, same output)
    grouped_attention: bool = True           # on a CPU, attention reads grouped KV heads in place (faster, same output)
    generator_precision: str = "auto"        # CPU matrix multiplies: auto (bf16 where the CPU does bf16 natively:
                                             # faster, same entities in benchmarks/results/throughput_bf16.md) | fp32 | bf16
    bf16_attention: bool = True              # with bf16 matrix multiplies on a CPU, attention's products in bf16 too
                                             # (faster: benchmarks/results/throughput_bf16_attention.md)
    in_place_cache: bool = True              # the generator's KV cache grows in place, not copied every pass
                                             # (faster, same output: llmner.decoding.kv_cache)
    grouped_prefill: bool = True             # on a CPU, the generator's first pass runs rows of similar prompt
                                             # lengths together instead of padding all to the longest
                                             # (llmner.decoding.tag_generator)
    default_schemas: dict[str, str] = field(default_factory=lambda: {"en": "biomedical_en", "zh": "cmeee"})
    # Languages the selector judges; candidates in other languages are kept unscored. None: the
    # bundle's list (an encoder whose vocabulary lacks a script cannot judge its text).
    selector_languages: tuple[str, ...] | None = None
    # Entity normalization: None = when the bundle ships a normalizer; True = required (error without
    # one); False = never.
    normalize: bool | None = None
    # Document-level consistency (llmner.decoding.consistency) after merging: None = the bundle's
    # setting (off for a bundle without one, and without a bundle); ConsistencyConfig.off() = never.
    consistency: ConsistencyConfig | None = None
    # A tokens-head selector's own spans, kept at the bundle's proposal thresholds (False: never proposed).
    proposals: bool = True
    # The bundle's reader (llmner.modeling.reader) tags the schemas it covers (False: the generator and
    # selector tag every schema, and the reader is not loaded).
    reader: bool = True
    # The bundle's proposers (readers) add their spans to the generator's candidates, each under the schemas
    # it covers (False: never, and none is loaded).
    proposer: bool = True

    def __post_init__(self) -> None:
        if self.selector_backend not in SELECTOR_BACKENDS:
            raise ConfigError(f"unknown selector backend {self.selector_backend!r} (expected {', '.join(SELECTOR_BACKENDS)})")
        check_precision(self.generator_precision)
        if self.selector_threshold is not None and not 0.0 <= self.selector_threshold <= 1.0:
            raise ConfigError(f"selector threshold must be in [0, 1], got {self.selector_threshold}")


@dataclass(frozen=True, slots=True)
class Proposer:
    """A reader whose spans join the generator's candidates under ``schemas`` (calibration keys), from
    span score ``threshold`` (a bundle's ``proposers`` entry, loaded)."""

    reader: Reader
    schemas: frozenset[str]
    threshold: float


class Pipeline:
    def __init__(self, generator: GeneratorRuntime, selector: SelectorRuntime | None = None,
                 config: PipelineConfig | None = None, count_tokens: Callable[[str], int] | None = None,
                 model_ids: dict[str, str] | None = None, normalizer: TypedNormalizer | None = None,
                 reader: Reader | None = None, proposers: Sequence[Proposer] = ()) -> None:
        self.generator = generator
        self.normalizer = normalizer
        self.reader = reader
        # Readers whose spans join the generator's candidates, each under its schemas (BundleManifest.proposers).
        self.proposers: list[Proposer] = list(proposers)
        # Schemas (calibration keys) the reader tags instead of the generator and selector
        # (BundleManifest.reader_schemas), and the span score from which its spans are kept.
        self.reader_schemas: set[str] = set()
        self.reader_threshold: float = 0.0
        self.selector = selector
        self.config = config or PipelineConfig()
        self.threshold = (self.config.selector_threshold if self.config.selector_threshold is not None
                          else (selector.threshold if selector is not None else 0.0))
        # Per-schema thresholds calibrated on each corpus's dev candidates (``llmner calibrate``); an
        # explicit PipelineConfig.selector_threshold overrides them all.
        self.thresholds: dict[str, float] = {}
        # The same for candidates the selector does not judge, on their generator_score; a schema
        # without one keeps them all.
        self.generator_thresholds: dict[str, float] = {}
        # Per-schema bonus for opening a tag in constrained decoding (recall against precision, chosen
        # on dev); PipelineConfig.open_bias overrides them all.
        self.open_biases: dict[str, float] = {}
        # The tokens-head selector's own spans (BundleManifest.proposal_threshold[s]): per schema (None:
        # off for it), else the global one (None: off).
        self.proposal_threshold: float | None = None
        self.proposal_thresholds: dict[str, float | None] = {}
        # Where a kept proposal overlaps a kept generator candidate of its type, which stays
        # (BundleManifest.proposal_overlap[s], llmner.decoding.overlaps): per schema, else the global rule.
        self.proposal_overlap: str = "both"
        self.proposal_overlaps: dict[str, str] = {}
        # Whether the selector relabels each generator candidate with the schema type it scores highest
        # (BundleManifest.relabel[_schemas]): per schema, else the global setting.
        self.relabel: bool = False
        self.relabel_schemas: dict[str, bool] = {}
        # Schemas generated under another schema's names (BundleManifest.prompt_schemas): requested name ->
        # prompted name. Thresholds and biases are keyed by the prompted one, the schema they were calibrated on.
        self.prompt_schemas: dict[str, str] = {}
        self._prompted: dict[str, tuple[EntitySchema, dict[str, str]]] = {}
        if count_tokens is None and getattr(generator, "tokenizer", None) is not None:
            tokenizer = generator.tokenizer  # type: ignore[attr-defined]
            count_tokens = lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])
        self.count_tokens = count_tokens
        self.consistency = self.config.consistency or ConsistencyConfig.off()
        ids = {"generator": generator.model_id or "generator"}
        if selector is not None:
            ids["selector"] = selector.model_id or "selector"
        if normalizer is not None:
            ids["normalizer"] = normalizer.name
        if reader is not None:
            ids["reader"] = reader.model_id
        if self.proposers:
            ids["proposer"] = "+".join(p.reader.model_id for p in self.proposers)
        ids.update(model_ids or {})
        self.model_ids: dict[str, str] = ids
        self._schemas: dict[str, EntitySchema] = {}
        self.last_timings_ms: dict[str, float] = {}
        self.verbose = False      # nlp(text) / nlp.pipe hide library warnings unless set (llmner.load(verbose=True))

    # ---- construction ----------------------------------------------------------------------------
    @classmethod
    def from_bundle(cls, path: str | Path | None = None, config: PipelineConfig | None = None,
                    generator_adapter: str | Path | None = None) -> Pipeline:
        from llmner.bundle import (
            GENERATOR_DIR,
            NORMALIZER_DIR,
            READER_DIR,
            SELECTOR_DIR,
            default_bundle_path,
            load_manifest,
        )
        from llmner.decoding.tag_generator import TagGenerationConfig
        from llmner.runtime.torch_generator import TorchGeneratorRuntime

        config = config or PipelineConfig()
        generation = TagGenerationConfig(in_place_cache=config.in_place_cache, grouped_prefill=config.grouped_prefill)
        root = Path(path) if path is not None else default_bundle_path()
        if root is None and config.normalize:
            raise ConfigError("normalization needs a model bundle with a normalizer/ folder (none is installed)")
        if root is None and generator_adapter is not None:
            raise ConfigError(f"generator adapter {generator_adapter}: no model bundle is installed to put it in (pass a bundle)")
        if root is None:
            log.warning("no default model bundle is installed (llmner/bundles/default): using the base SmolLM2 "
                        "zero-shot with constrained decoding and NO selector; expect low scores (pass --model BUNDLE)")
            mode = config.decoding_mode or "speculative"
            generator = TorchGeneratorRuntime.from_base(None, mode=mode, batch_size=config.generator_batch_size,
                                                        generation_config=generation, device=config.device,
                                                        precision=config.generator_precision)
            return cls(generator, None, config, model_ids={"bundle": "base-zero-shot"})
        manifest = load_manifest(root)
        mode = config.decoding_mode or manifest.decoding_mode
        generator = TorchGeneratorRuntime.from_pretrained(root / GENERATOR_DIR, mode=mode,
                                                          batch_size=config.generator_batch_size,
                                                          generation_config=generation,
                                                          device=config.device,
                                                          adapter=generator_adapter, merge_adapter=config.merge_adapter,
                                                          grouped_attention=config.grouped_attention,
                                                          precision=config.generator_precision,
                                                          bf16_attention=config.bf16_attention)
        if manifest.generator_id:
            generator.model_id = manifest.generator_id
        if generator_adapter is not None:
            generator.model_id = f"{manifest.generator_id or root.name} + {generator_adapter}"
        selector = None
        if manifest.has_selector and config.selector_backend != "none":
            selector = load_selector(root / SELECTOR_DIR, config)
            if manifest.selector_id:
                selector.model_id = manifest.selector_id
            if manifest.selector_threshold is not None and config.selector_threshold is None:
                selector.threshold = manifest.selector_threshold
        overrides: dict[str, Any] = {}
        if manifest.sentences_per_chunk != 1 and config.chunking == ChunkingConfig():
            # Chunk as the generator was trained (a caller's own chunking settings win).
            overrides["chunking"] = dataclasses.replace(config.chunking, sentences_per_chunk=manifest.sentences_per_chunk)
        if manifest.default_schemas:
            overrides["default_schemas"] = {**config.default_schemas, **manifest.default_schemas}
        if config.selector_languages is None and manifest.selector_languages:
            overrides["selector_languages"] = tuple(manifest.selector_languages)
        if config.consistency is None:
            overrides["consistency"] = (ConsistencyConfig.from_dict(manifest.consistency) if manifest.consistency is not None
                                        else ConsistencyConfig.off())
        config = dataclasses.replace(config, **overrides)   # a copy: the caller's config stays as passed
        normalizer = None
        if config.normalize is not False:
            if (root / NORMALIZER_DIR / "normalizer.json").is_file():
                from llmner.normalization import load_normalizer

                normalizer = load_normalizer(root / NORMALIZER_DIR)
                normalizer.name = f"{manifest.name}-normalizer"
            elif config.normalize:
                raise ConfigError(f"bundle {root} has no normalizer ({NORMALIZER_DIR}/normalizer.json); "
                                  "build one with `llmner normalizer build --bundle BUNDLE`")
        reader = None
        if config.reader and manifest.reader_schemas:
            reader = Reader.from_pretrained(root / READER_DIR, device=config.device)
            if manifest.reader_id:
                reader.model_id = manifest.reader_id
        proposers: list[Proposer] = []
        if config.proposer and selector is not None:
            # One frozen LM for every reader that reads with the same one.
            encoders = {reader.config.base_model: reader.encoder} if reader is not None else {}
            for entry in manifest.proposers:
                base = ReaderConfig.from_pretrained(root / entry.directory).base_model
                proposer = Reader.from_pretrained(root / entry.directory, device=config.device, encoder=encoders.get(base))
                encoders.setdefault(base, proposer.encoder)
                if entry.id:
                    proposer.model_id = entry.id
                proposers.append(Proposer(proposer, frozenset(entry.schemas), entry.threshold))
        pipe = cls(generator, selector, config, model_ids={"bundle": manifest.name}, normalizer=normalizer, reader=reader,
                   proposers=proposers)
        pipe.reader_schemas = set(manifest.reader_schemas)
        pipe.reader_threshold = manifest.reader_threshold
        if selector is not None and config.selector_threshold is None:
            pipe.thresholds = dict(manifest.selector_thresholds)
        pipe.generator_thresholds = dict(manifest.generator_thresholds)
        pipe.open_biases = dict(manifest.open_bias)
        pipe.proposal_threshold = manifest.proposal_threshold
        pipe.proposal_thresholds = dict(manifest.proposal_thresholds)
        pipe.proposal_overlap = manifest.proposal_overlap
        pipe.proposal_overlaps = dict(manifest.proposal_overlaps)
        pipe.relabel = manifest.relabel
        pipe.relabel_schemas = dict(manifest.relabel_schemas)
        pipe.prompt_schemas = dict(manifest.prompt_schemas)
        for name in pipe.prompt_schemas:     # a bad pairing fails at load, not on the first note in that language
            try:
                pipe.prompted(pipe.schema_named(name))
            except ValidationError as exc:
                raise ConfigError(f"bundle {root}: prompt_schemas[{name!r}]: {exc}") from None
        return pipe

    # ---- schemas ---------------------------------------------------------------------------------
    def schema_named(self, name: str) -> EntitySchema:
        if name not in self._schemas:
            self._schemas[name] = get_schema(name)
        return self._schemas[name]

    def add_schema(self, schema: EntitySchema) -> None:
        """Make ``schema`` resolvable by name (e.g. a corpus schema, or one not shipped as a file)."""
        self._schemas[schema.name] = schema

    def prompted(self, schema: EntitySchema) -> tuple[EntitySchema, dict[str, str] | None]:
        """The schema the generator is prompted with for ``schema`` (itself, unless ``prompt_schemas`` names
        another) and the map from the prompted type names to ``schema``'s (None: the names are the same)."""
        name = self.prompt_schemas.get(schema.name)
        if name is None:
            return schema, None
        if schema.name not in self._prompted:
            prompt = self.schema_named(name)
            self._prompted[schema.name] = (prompt, type_correspondence(schema, prompt))
        return self._prompted[schema.name]

    def calibration_key(self, name: str) -> str:
        """The schema name thresholds and biases of ``name`` are stored under: the schema it is prompted with."""
        return self.prompt_schemas.get(name, name)

    def schema_for(self, doc: Document) -> EntitySchema:
        name = doc.metadata.get("schema") if doc.metadata else None
        return self.schema_named(str(name)) if name else self.default_schema(doc.language)

    def default_schema(self, language: str) -> EntitySchema:
        name = self.config.default_schemas.get(language)
        if name is None:
            raise ConfigError(f"no default schema for language {language!r}; set metadata.schema on the document")
        return self.schema_named(name)

    # ---- documents in, documents out (the Python API) --------------------------------------------
    def __call__(self, item: str | Mapping[str, Any] | Document) -> Document:
        """The predicted document of one text, dict (``{"text", "id"?, "language"?, ...}``) or Document."""
        return next(iter(self.pipe([item], batch_size=1)))

    def pipe(self, items: Iterable[str | Mapping[str, Any] | Document], batch_size: int = 8) -> Iterator[Document]:
        """Predicted documents, in input order, ``batch_size`` inputs per batch (consumed lazily).

        A string becomes a document with id ``"<index>"`` and the language its script shows; a dict
        is read like a JSONL line (``id`` defaults to the index); a Document is tagged as given,
        without its gold annotations. Each returned document holds the input's text and metadata,
        the predicted ``entities`` (``.text .start .end .type .score .normalized_id``) and the model
        ids in ``metadata["model_ids"]``."""
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        from llmner.quiet import library_noise_hidden

        def tagged(batch: list[Document]) -> list[Document]:
            with library_noise_hidden(self.verbose):
                return [r.to_document(d.text) for d, r in zip(batch, self.process(batch))]

        batch: list[Document] = []
        for index, item in enumerate(items):
            batch.append(as_document(item, index))
            if len(batch) == batch_size:
                yield from tagged(batch)
                batch = []
        if batch:
            yield from tagged(batch)

    # ---- stages ----------------------------------------------------------------------------------
    def chunk(self, doc: Document) -> list[Chunk]:
        return chunk_document(doc, self.config.chunking, self.count_tokens)

    def score_chunks(self, chunks: Sequence[Chunk],
                     schemas: EntitySchema | Sequence[EntitySchema] | None = None) -> list[ChunkEntities]:
        """Every candidate of every chunk, in the chunk frame, with its selector score (None without a
        selector); nothing is filtered. The candidates are the generator's, then, under a schema with a
        proposal threshold, the spans the selector tags itself that the generator did not propose
        (``source="selector"``). Chunks under a schema the reader covers (``reads``) are the reader's
        alone: its spans with its own scores (``source="reader"``)."""
        if not chunks:
            return []
        per_schema = self._chunk_schemas(chunks, schemas)
        prompted = [self.prompted(s) for s in per_schema]
        read = [ci for ci in range(len(chunks)) if self.reads(per_schema[ci])]
        generated = sorted(set(range(len(chunks))) - set(read))
        per_chunk: list[ChunkEntities] = [[] for _ in chunks]
        t0 = time.perf_counter()
        if read:
            assert self.reader is not None
            for ci, entities in zip(read, self.reader.read([chunks[ci].text for ci in read]), strict=True):
                per_chunk[ci] = entities
        t_read = time.perf_counter()
        results = self.generator.tag([TagRequest(chunks[ci].text, prompted[ci][0], self.open_bias_for(prompted[ci][0]))
                                      for ci in generated]) if generated else []
        for ci, result in zip(generated, results, strict=True):
            # Trimmed under the prompted schema.
            per_chunk[ci] = _trimmed(result.entities, chunks[ci].text, prompted[ci][0])
        t1 = time.perf_counter()
        # Renamed to the requested schema's names where prompt_schemas maps them (the reader tags under the
        # prompted names too).
        per_chunk = [entities if names is None else [dataclasses.replace(e, type=names[e.type]) for e in entities]
                     for entities, (_, names) in zip(per_chunk, prompted)]
        languages = self.config.selector_languages
        # The reader's chunks are its own: the selector neither judges nor adds to them.
        judged_chunks = [ci for ci in generated if not languages or chunks[ci].language in languages]
        if self.selector is not None:
            proposing = [ci for ci in judged_chunks if self.proposal_threshold_for(per_schema[ci]) is not None]
            rows = self._add_proposals(chunks, per_schema, per_chunk, proposing) if proposing else {}
            offered = [ci for ci in judged_chunks if self.proposes(per_schema[ci])]
            for ci, spans in zip(offered, self.proposer_spans([chunks[ci].text for ci in offered],
                                                              [per_schema[ci] for ci in offered])):
                per_chunk[ci] = with_proposer_spans(per_chunk[ci], spans)
            judged = [(ci, k) for ci in judged_chunks for k in range(len(per_chunk[ci])) if per_chunk[ci][k].score is None]
            if judged:
                candidates = [Candidate(chunks[ci].text, per_chunk[ci][k].start, per_chunk[ci][k].end, per_chunk[ci][k].type,
                                        per_schema[ci].definition(per_chunk[ci][k].type)) for ci, k in judged]
                relabel_in = [per_schema[ci] if self.relabels(per_schema[ci]) else None for ci, _ in judged]
                for (ci, k), (etype, score) in zip(judged, self.judge_candidates(candidates, rows, relabel_in)):
                    per_chunk[ci][k] = dataclasses.replace(per_chunk[ci][k], type=etype, score=score)
                if any(relabel_in):
                    per_chunk = [one_per_key(entities) for entities in per_chunk]
        t2 = time.perf_counter()
        self.last_timings_ms = {"generate": (t1 - t_read) * 1000, "select": (t2 - t1) * 1000}
        if read:
            self.last_timings_ms["read"] = (t_read - t0) * 1000
        return per_chunk

    def judge_candidates(self, candidates: Sequence[Candidate], rows: Mapping[TokenWindow, RowProbabilities],
                         relabel_in: Sequence[EntitySchema | None]) -> list[tuple[str, float]]:
        """The selector's (type, score) of each candidate: its own type and score, or where
        ``relabel_in[i]`` is a schema, the type of that schema the selector scores highest on its span
        (ties: its own type), with that score. ``rows``: those proposing read (``score_with_rows``)."""
        assert self.selector is not None
        expanded: list[Candidate] = []
        sizes: list[int] = []        # how many readings of each candidate: its own type first, then the others
        for candidate, schema in zip(candidates, relabel_in, strict=True):
            others = [] if schema is None else [dataclasses.replace(candidate, type=t, definition=schema.definition(t))
                                                for t in schema.type_names if t != candidate.type]
            expanded += [candidate, *others]
            sizes.append(1 + len(others))
        scores = self.selector.score_with_rows(expanded, rows) if expanded else []
        out, at = [], 0
        for size in sizes:
            best = max(range(at, at + size), key=lambda i: float(scores[i]))   # the first (its own type) on ties
            out.append((expanded[best].type, float(scores[best])))
            at += size
        return out

    def relabels(self, schema: str | EntitySchema | None) -> bool:
        """Whether the selector relabels the generator's candidates under ``schema`` with the schema type
        it scores highest (``BundleManifest.relabel[s]``: per schema, else the global setting)."""
        if self.selector is None:
            return False
        languages = self.config.selector_languages
        if isinstance(schema, EntitySchema) and languages and schema.language not in languages:
            return False      # the selector does not judge this language: nothing to relabel with
        return self._per_schema(self.relabel_schemas, schema, self.relabel)

    def proposer_for(self, schema: str | EntitySchema | None) -> Proposer | None:
        """The proposer whose spans join the generator's candidates under ``schema`` (the bundle names the
        schema it is prompted with in that proposer's ``schemas``; the selector judges them), if any."""
        name = schema.name if isinstance(schema, EntitySchema) else schema
        if name is None or self.selector is None or not self.config.proposer:
            return None
        key = self.calibration_key(name)
        return next((p for p in self.proposers if key in p.schemas), None)

    def proposes(self, schema: str | EntitySchema | None) -> bool:
        """Whether a proposer's spans join the generator's candidates under ``schema``."""
        return self.proposer_for(schema) is not None

    def proposer_spans(self, texts: Sequence[str], schemas: Sequence[EntitySchema]) -> list[ChunkEntities]:
        """The spans of each text (a chunk's) that its schema's proposer reads, of the schema's types,
        under the requested names, from the proposer's span score threshold, unscored
        (``source="reader"``: the selector scores them); none under a schema no proposer proposes for.
        Each proposer reads its texts in one call."""
        if len(texts) != len(schemas):
            raise ValidationError(f"proposer_spans: {len(texts)} texts but {len(schemas)} schemas")
        out: list[ChunkEntities] = [[] for _ in texts]
        owners = [self.proposer_for(schema) for schema in schemas]
        for proposer in self.proposers:
            mine = [i for i, owner in enumerate(owners) if owner is proposer]
            if not mine:
                continue
            for i, entities in zip(mine, proposer.reader.read([texts[i] for i in mine]), strict=True):
                prompt, names = self.prompted(schemas[i])
                out[i] = [dataclasses.replace(e, type=e.type if names is None else names[e.type], score=None)
                          for e in entities if e.type in prompt and (e.score or 0.0) >= proposer.threshold]
        return out

    def reads(self, schema: EntitySchema) -> bool:
        """Whether chunks under ``schema`` go to the reader instead of the generator and selector: the
        bundle names the schema it is prompted with (``BundleManifest.reader_schemas``) and the reader
        tags exactly that schema's types."""
        if self.reader is None or not self.config.reader:
            return False
        prompt, _ = self.prompted(schema)
        return (self.calibration_key(schema.name) in self.reader_schemas
                and sorted(prompt.type_names) == sorted(self.reader.config.types))

    def _add_proposals(self, chunks: Sequence[Chunk], per_schema: Sequence[EntitySchema],
                       per_chunk: list[ChunkEntities], which: Sequence[int]) -> dict[TokenWindow, RowProbabilities]:
        """Append to ``per_chunk[ci]`` (ci in ``which``) the selector's own spans, unscored (``score_chunks``
        scores them with the rest, off the rows returned here)."""
        found = self.selector_spans([chunks[ci].text for ci in which], [per_schema[ci] for ci in which],
                                    [{e.key for e in per_chunk[ci]} for ci in which])
        for ci, candidates in zip(which, found.spans, strict=True):
            per_chunk[ci] = per_chunk[ci] + [Entity(c.start, c.end, c.type, c.text[c.start : c.end], source="selector")
                                             for c in candidates]
        return found.rows

    def selector_spans(self, texts: Sequence[str], schemas: Sequence[EntitySchema],
                       existing: Sequence[Collection[tuple[int, int, str]]]) -> Proposals:
        """The spans the selector tags in each chunk text under its schema, less those ``existing[i]`` holds
        ((start, end, type) in the chunk frame: the generator's candidates), as unscored candidates, with
        the rows they were read from (score candidates with ``selector.score_with_rows`` and them). The one
        place proposals are made: the pipeline, rescoring and the dev benchmark all call it."""
        if self.selector is None:
            raise ConfigError("proposing spans needs a selector")
        requests = [ProposalRequest(text, tuple((t, schema.definition(t)) for t in schema.type_names))
                    for text, schema in zip(texts, schemas, strict=True)]
        found = self.selector.propose(requests)
        found.spans = [[c for c in spans if (c.start, c.end, c.type) not in have]
                       for spans, have in zip(found.spans, existing, strict=True)]
        return found

    def proposal_threshold_for(self, schema: str | EntitySchema | None) -> float | None:
        """The score at which the selector's own spans are kept under ``schema``; None: not proposed."""
        if not self.config.proposals or self.selector is None or not self.selector.can_propose:
            return None
        return self._per_schema(self.proposal_thresholds, schema, self.proposal_threshold)

    def proposal_overlap_for(self, schema: str | EntitySchema | None) -> str:
        """Which span stays where a kept proposal overlaps a kept generator candidate of its type under
        ``schema`` (``llmner.decoding.overlaps``)."""
        return self._per_schema(self.proposal_overlaps, schema, self.proposal_overlap)

    def open_bias_for(self, schema: EntitySchema) -> float:
        """The logit bonus for opening a tag when generating under ``schema``."""
        if self.config.open_bias is not None:
            return self.config.open_bias
        return self.open_biases.get(self.calibration_key(schema.name), 0.0)

    def threshold_for(self, schema: str | EntitySchema | None) -> float:
        """The selector threshold for candidates of ``schema`` (its calibrated one, else the global one)."""
        return self._per_schema(self.thresholds, schema, self.threshold)

    def _per_schema(self, settings: Mapping[str, Any], schema: str | EntitySchema | None, default: Any) -> Any:
        """``schema``'s own entry of ``settings`` (keyed by calibration key), else ``default``."""
        name = schema.name if isinstance(schema, EntitySchema) else schema
        return settings.get(self.calibration_key(name), default) if name is not None else default

    def selection_rule(self, schema: str | EntitySchema | None) -> SelectionRule:
        """``schema``'s selection settings (its own, else the global ones): a proposal is kept by the
        schema's proposal threshold, a generator candidate by its selector score when the selector judged
        it, else by its generator score where the schema has a generator threshold, and kept proposals
        meet kept candidates of their type under the schema's overlap rule."""
        name = schema.name if isinstance(schema, EntitySchema) else schema
        # Under a schema the proposer proposes for, the reader's spans carry the selector's score and are
        # kept as the generator's candidates are.
        return SelectionRule(self.threshold_for(schema), self.proposal_threshold_for(schema),
                             self.proposal_overlap_for(schema),
                             self.generator_thresholds.get(self.calibration_key(name)) if name is not None else None,
                             self.threshold_for(schema) if self.proposes(schema) else self.reader_threshold)

    def selection(self, entities: Sequence[Entity], schema: str | EntitySchema | None) -> list[Entity]:
        """What selection keeps of one chunk's or one document's candidates under ``schema``
        (``SelectionRule.select``). Any one frame; order kept."""
        return self.selection_rule(schema).select(entities)

    def select(self, per_chunk: Sequence[ChunkEntities],
               schemas: Sequence[str | EntitySchema] | None = None) -> list[ChunkEntities]:
        """``selection`` of each chunk's candidates under its schema (``schemas``: one per chunk; None:
        the global threshold and rule). Frame in, same frame out."""
        per_schema = list(schemas) if schemas is not None else [None] * len(per_chunk)
        if len(per_schema) != len(per_chunk):
            raise ConfigError(f"{len(per_chunk)} chunks but {len(per_schema)} schemas")
        return [self.selection(ents, schema) for ents, schema in zip(per_chunk, per_schema)]

    def infer_chunks(self, chunks: Sequence[Chunk],
                     schemas: EntitySchema | Sequence[EntitySchema] | None = None) -> list[ChunkEntities]:
        """The selected entities of every chunk, in the chunk frame (``score_chunks`` then ``select``)."""
        return self.select(self.score_chunks(chunks, schemas), self._chunk_schemas(chunks, schemas))

    def assemble(self, doc: Document, chunks: Sequence[Chunk], per_chunk: Sequence[ChunkEntities],
                 timings_ms: dict[str, float] | None = None) -> ResultRecord:
        """The result record of ``doc`` from its chunks' entities (chunk frame, as ``infer_chunks``
        returns them): merged into the document frame by ``merge_chunk_entities``, made consistent
        across the document (``llmner.decoding.consistency``, the steps ``self.consistency`` turns on),
        then normalized when the pipeline has a normalizer."""
        entities = merge_chunk_entities(chunks, per_chunk, doc.text)
        if self.consistency.enabled():
            entities = propagate(doc.text, entities, self.consistency)
        timings = dict(timings_ms or {})
        if self.normalizer is not None:
            entities = self.normalizer.normalize(entities, doc)
            timings["normalize"] = round(self.normalizer.last_ms, 3)
        return ResultRecord(document_id=doc.id, entities=entities, model_ids=dict(self.model_ids),
                            timings_ms=timings, chunk_count=len(chunks), language=doc.language,
                            metadata=doc.without_annotations().metadata)

    def process(self, docs: Sequence[Document], select: bool = True) -> list[ResultRecord]:
        """Chunk every document, generate and select over all chunks at once, merge per document.
        ``select=False`` keeps every candidate (scores attached): used by evaluation."""
        strays = [type(d).__name__ for d in docs if not isinstance(d, Document)]
        if strays:
            raise ConfigError(f"process() takes Documents, got {strays[0]}; for strings or dicts call the pipeline "
                              "(nlp(text)) or nlp.pipe(texts)")
        t0 = time.perf_counter()
        chunks_per_doc = [self.chunk(d) for d in docs]
        t_chunk = (time.perf_counter() - t0) * 1000
        flat = [c for cs in chunks_per_doc for c in cs]
        schemas = [self.schema_for(d) for d, cs in zip(docs, chunks_per_doc) for _ in cs]
        scored = self.score_chunks(flat, schemas)
        per_chunk = self.select(scored, schemas) if select else scored
        stage = dict(self.last_timings_ms, chunk=t_chunk)
        total_chars = max(1, sum(len(d.text) for d in docs))
        out, i = [], 0
        for doc, cs in zip(docs, chunks_per_doc):
            t_merge = time.perf_counter()
            record = self.assemble(doc, cs, per_chunk[i : i + len(cs)])
            share = len(doc.text) / total_chars   # batch stage times apportioned by document length
            own = record.timings_ms   # the assemble step's own (normalize)
            record.timings_ms = {k: round(v * share, 3) for k, v in stage.items()}
            record.timings_ms["merge"] = round((time.perf_counter() - t_merge) * 1000 - own.get("normalize", 0.0), 3)
            record.timings_ms.update(own)
            out.append(record)
            i += len(cs)
        return out

    def _chunk_schemas(self, chunks: Sequence[Chunk], schemas: EntitySchema | Sequence[EntitySchema] | None) -> list[EntitySchema]:
        if schemas is None:
            return [self.default_schema(c.language) for c in chunks]
        if isinstance(schemas, EntitySchema):
            return [schemas] * len(chunks)
        if len(schemas) != len(chunks):
            raise ConfigError(f"{len(chunks)} chunks but {len(schemas)} schemas")
        return list(schemas)


def _trimmed(entities: ChunkEntities, text: str, schema: EntitySchema) -> ChunkEntities:
    """Generator entities of the schema (chunk frame, ``text`` the chunk's) with whitespace trimmed
    from both edges, with no selector score; blank ones dropped (a model can open a tag before a space; the scorer
    compares exact offsets)."""
    out = []
    for ent in entities:
        if ent.type not in schema or not 0 <= ent.start < ent.end <= len(text):
            continue
        start, end = ent.start, ent.end
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if start < end:
            out.append(Entity(start, end, ent.type, text[start:end], normalized_id=ent.normalized_id,
                              generator_score=ent.generator_score))
    return out


def load_selector(path: str | Path, config: PipelineConfig) -> SelectorRuntime:
    """A selector runtime for a saved selector directory, per ``config.selector_backend``."""
    if config.selector_backend == "torch":
        from llmner.runtime.torch_selector import TorchSelectorRuntime

        return TorchSelectorRuntime.from_pretrained(path, batch_size=config.selector_batch_size)
    from llmner.runtime.onnx_selector import OnnxSelectorRuntime

    return OnnxSelectorRuntime(path, device=config.selector_device, batch_size=config.selector_batch_size)


def as_document(item: str | Mapping[str, Any] | Document, index: int = 0) -> Document:
    """The document to tag for a string, a dict or a Document (see ``Pipeline.pipe``)."""
    if isinstance(item, Document):
        return item.without_annotations().validate()
    if isinstance(item, str):
        return Document(str(index), item, guess_language(item) or "en")
    if isinstance(item, Mapping):
        data = dict(item)
        data.setdefault("id", str(index))
        if "language" not in data and isinstance(data.get("text"), str):
            data["language"] = guess_language(data["text"]) or "en"
        return Document.from_dict(data).without_annotations()
    raise ConfigError(f"cannot tag a {type(item).__name__}: pass a string, a dict with 'text', or a Document")
