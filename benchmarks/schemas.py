"""The schema check: does a generator follow the types in its prompt, or the corpus it was trained on?

For every corpus, on the leading documents of its dev split, strict F1 of the corpus's own types
(a) under its own schema, (b) under the language default (biomedical_en / clinical_zh; gold types
mapped to the default type they fall under, other predicted types not scored), (c) under held-out
names and definitions never seen in training; and the type confusion of each. Targets: (b) and (c)
within 5 F1 points of (a), and no type absorbing another. Writes benchmarks/results/schemas.md
(and .json). Selector off: the check is about the generator's labels. Usage:

    .venv/bin/python benchmarks/schemas.py [--model BUNDLE] [--adapter CHECKPOINT] [--sentences 40]

``--adapter`` grafts a training checkpoint's LoRA weights (``<run>/checkpoints/step-N`` or a portable
checkpoint) onto the bundle's generator, to check a run while it trains. ``--cache DIR`` keeps each
corpus and condition's predictions there, so that a check killed part way (a session's end) resumes
where it stopped when rerun with the same arguments. ``--condition own`` (repeatable) runs only the
listed conditions; (a) is always among them, as the others are read against it: an own-schema check of
more sentences in the time of a three-condition one (a checkpoint's ship test).

``--selector`` checks what a user gets instead: the generator's candidates (cached or not) judged by the
bundle's selector as the pipeline judges them under each condition's schema (``judge_stored``: its
threshold for that schema, its own spans where the schema has a proposal threshold, the overlap rule;
a user's schema, as (b) and (c) are, gets the global ones). It writes ``schemas_selected.md`` by default.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

from llmner.evaluation.schema_check import CONDITIONS
from llmner.modeling.precision import PRECISIONS

CORPORA = ["ncbi_disease", "bc5cdr", "genia", "jnlpba", "bc2gm", "linnaeus", "s800", "cmeee"]
RESULTS = Path(__file__).resolve().parent / "results"


def build_pipeline(model: str | None, adapter: str | None, threads: int, precision: str = "auto"):
    import torch

    torch.set_num_threads(threads)
    from llmner.bundle import default_bundle_path
    from llmner.pipeline import Pipeline, PipelineConfig

    root = Path(model) if model else default_bundle_path()
    if root is None:
        raise SystemExit("no default model bundle is installed: pass --model BUNDLE")
    pipe = Pipeline.from_bundle(root, PipelineConfig(decoding_mode="speculative", selector_backend="none", normalize=False,
                                                     generator_precision=precision),
                                generator_adapter=adapter or None)
    name = f"{root.name} + {adapter}" if adapter else root.name
    pipe.model_ids["generator"] = name
    return pipe, name


def build_judge(model: str | None):
    """The bundle's pipeline with its selector (ONNX Runtime, as shipped), to judge stored candidates."""
    from llmner.bundle import default_bundle_path
    from llmner.pipeline import Pipeline, PipelineConfig

    return Pipeline.from_bundle(Path(model) if model else default_bundle_path(), PipelineConfig(normalize=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="bundle directory (default: the shipped bundle)")
    parser.add_argument("--adapter", default=None, help="checkpoint whose adapter replaces the bundle's")
    parser.add_argument("--corpus", action="append", default=None)
    parser.add_argument("--sentences", type=int, default=40, help="leading dev sentences per corpus")
    parser.add_argument("--spread", type=int, default=0,
                        help="take the sentences as this many runs of documents evenly spaced over the split (0: leading documents)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "schemas.md")
    parser.add_argument("--cache", type=Path, default=None, help="directory keeping predictions, to resume a killed check")
    parser.add_argument("--selector", action="store_true", help="judge the candidates with the bundle's selector")
    parser.add_argument("--judge-model", default=None, help="with --selector: the bundle whose selector and settings judge "
                        "(default: --model's), e.g. a copy with one setting changed, reading the same cached candidates")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="the generator's CPU matrix multiplies (llmner.modeling.precision)")
    parser.add_argument("--condition", action="append", choices=CONDITIONS, default=None,
                        help="conditions to run (default: all three; own is always run)")
    parser.add_argument("--default-schema", type=Path, default=None,
                        help="a variant of the default schema's definitions (same name and types) shown in condition (b)")
    args = parser.parse_args()
    if args.selector and args.out == RESULTS / "schemas.md":
        args.out = RESULTS / "schemas_selected.md"
    conditions = {"own", *(args.condition or CONDITIONS)}

    from llmner.data_processing.corpora import corpus_schema, load_corpus
    from llmner.evaluation.predict import (
        PredictionCache,
        predict_documents,
        stderr_progress,
    )
    from llmner.evaluation.rescore import selected_documents
    from llmner.evaluation.schema_check import (
        CONVENTIONS_APART,
        check_condition,
        confusion_markdown,
        namings_for,
        set_aside,
        summary_row,
    )
    from llmner.evaluation.subsets import leading_documents, spread_documents

    pipe, model_name = build_pipeline(args.model, args.adapter, args.threads, args.precision)
    judge = build_judge(args.judge_model or args.model) if args.selector else None
    from llmner.modeling.attention import uses_bf16_attention
    from llmner.modeling.precision import model_matmul_dtype

    generator_model = pipe.generator.tag_generator.model
    matmuls = "bf16" if model_matmul_dtype(generator_model) is not None else "fp32"
    if uses_bf16_attention(generator_model):  # attention's products too (caches made before it keep "bf16")
        matmuls = "bf16, attention bf16"
    print(f"generator matrix multiplies: {matmuls}", flush=True)
    key = {"model": model_name, "sentences": args.sentences}
    if args.spread:
        key["spread"] = args.spread
    variant = None
    if args.default_schema:  # its predictions under (b) are not the default's: a cache of its own
        from llmner.schema import EntitySchema

        variant = EntitySchema.load(args.default_schema)
        key["default_schema"] = hashlib.sha256(args.default_schema.read_bytes()).hexdigest()[:12]
    if matmuls != "fp32":  # fp32 caches (made before the precision setting existed) keep their key
        key["matmuls"] = matmuls
    cache = PredictionCache(args.cache, key) if args.cache else None
    rows, confusions = [], []
    started = time.perf_counter()
    for corpus in args.corpus or CORPORA:
        split = load_corpus(corpus, "dev")
        docs, sentences = (spread_documents(split, args.sentences, args.spread) if args.spread
                           else leading_documents(split, args.sentences))
        results, runs = [], []
        for naming in namings_for(corpus_schema(corpus), default_schema=variant):
            if naming.condition not in conditions:
                continue
            predicted = cache.get(corpus, naming.condition) if cache else None
            if predicted is None:
                predicted = predict_documents(pipe, docs, naming.schema,
                                              on_batch=stderr_progress(f"{corpus} {naming.condition}", len(docs)))
                if cache:
                    cache.put(corpus, naming.condition, predicted)
            if judge is not None:
                predicted = selected_documents(judge, docs, predicted, naming.schema)
            results.append(check_condition(naming, docs, predicted))
            runs.append((naming, predicted))
        gold = sum(len(d.entities) for d in docs)
        row = summary_row(corpus, results, len(docs), gold)
        row["sentences"] = sentences
        rows.append(row)
        confusions.append((corpus, results))
        print(f"{corpus}: " + ", ".join(f"{r.condition} {r.report.strict.f1 * 100:.1f}" for r in results), flush=True)
        if corpus in CONVENTIONS_APART:  # the same predictions, the corpus's own convention set aside
            what, texts = CONVENTIONS_APART[corpus]
            apart = [check_condition(naming, docs, predicted, texts) for naming, predicted in runs]
            row = summary_row(f"{corpus} ({what} set aside)", apart, len(docs), sum(len(d.entities) for d in set_aside(docs, texts)))
            row["sentences"] = sentences
            rows.append(row)
    elapsed = time.perf_counter() - started

    def cell(row: dict, cond: str) -> str:
        if cond not in row:
            return "not run"
        c = row[cond]
        delta = "" if cond == "own" else f" ({c['minus_own'] * 100:+.1f})"
        return f"{c['f1'] * 100:.1f}{delta}"

    lines = [f"# Schema check: {model_name}", "",
             f"`python benchmarks/schemas.py {' '.join(_argv())}` — dev split, "
             + (f"{args.spread} evenly spaced runs of documents" if args.spread else "leading documents")
             + f" with {args.sentences}+ sentences per corpus, "
             + ("generator candidates judged by the bundle's selector as the pipeline judges them under each schema"
                + (f" (relabelling {'on' if judge.relabel else 'off'}"
                   + "".join(f", {k} {'on' if v else 'off'}" for k, v in sorted(judge.relabel_schemas.items())) + ")")
                if judge is not None else "generator only (no selector)")
             + (f", condition (b) shown with the definitions of `{args.default_schema}`" if args.default_schema else "")
             + ", speculative decoding, "
             f"{args.threads} threads, {elapsed / 60:.0f} min.", "",
             "Strict F1 of the corpus's own types; in brackets the difference to (a). Absorption: the largest share of a gold "
             "type's span-matched mentions labelled as one other type. A row \"(… set aside)\" scores the row above's "
             "predictions again without the mentions whose text is one the corpus annotates and the default schema's "
             "definition excludes (`llmner.evaluation.schema_check.CONVENTIONS_APART`), in gold and predictions alike.", "",
             "| corpus | docs / sents / gold | (a) own schema | (b) default schema | (c) held-out naming | "
             "within 5 of (a) | worst absorption (a / b / c) |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        ran = [c for c in ("default", "held_out") if c in row]
        ok = all(abs(row[c]["minus_own"]) <= 0.05 or row[c]["minus_own"] > 0 for c in ran) if ran else None
        absorb = " / ".join((f"{row[c]['absorption'] * 100:.0f}%" + (f" ({row[c]['absorbed']})" if row[c]["absorption"] >= 0.2 else ""))
                            if c in row else "—" for c in CONDITIONS)
        lines.append(f"| {row['corpus']} | {row['documents']} / {row['sentences']} / {row['gold']} | {cell(row, 'own')} | "
                     f"{cell(row, 'default')} | {cell(row, 'held_out')} | {'—' if ok is None else 'yes' if ok else 'no'} | {absorb} |")
    lines += ["", "## Type confusion (gold type as named in each schema × type predicted on exactly its span)", ""]
    for corpus, results in confusions:
        lines += [f"### {corpus}", ""]
        for r in results:
            lines += confusion_markdown(r) + [""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    args.out.with_suffix(".json").write_text(json.dumps({"model": model_name, "sentences": args.sentences,
                                                         "rows": rows, "seconds": round(elapsed)}, indent=2) + "\n")
    print("\n".join(lines[:len(rows) + 9]))


def _argv() -> list[str]:
    import sys

    return sys.argv[1:]


if __name__ == "__main__":
    main()
