"""Decoding modes side by side: free vs constrained vs speculative, batch 1 and batch 8, on CPU.

    .venv/bin/python benchmarks/decoding.py --sentences 50            # packaged SmolLM2, no adapter
    .venv/bin/python benchmarks/decoding.py --model path/to/bundle    # a trained generator bundle

Same model, same sentences (NCBI-Disease dev; GENIA dev for the 5-type case), same prompt and the
same shared-prefix KV for every mode. Per mode: forward passes per sentence (a row's prompt prefill
included; the shared prefix is computed once outside the timing), output tokens per sentence,
sentences/s, and the ratios of free's passes and time to the mode's. Asserts that speculative returns
exactly the constrained outputs. The token budget per sentence is 2 x source tokens + 32 (what a
user would try first; an untuned model in free mode may ramble to it). Also prints output tokens per
sentence of the inline vs lines targets of GENIA gold.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llmner.codecs import get_codec  # noqa: E402
from llmner.data_processing.corpora import load_sentences  # noqa: E402
from llmner.decoding import TagGenerationConfig, TagGenerator  # noqa: E402
from llmner.prompts import PromptBuilder  # noqa: E402
from llmner.schema import get_schema  # noqa: E402

MODES = ("free", "constrained", "speculative")
MISMATCHES: list[tuple[str, int, int, str, str]] = []


def load_model(reference: str | None):
    """A generator bundle directory (config.json of GeneratorConfig + adapter) or a base model reference."""
    if reference and (Path(reference) / "generator_config.json").is_file():
        from llmner.modeling.generator import GeneratorModel

        gen = GeneratorModel.from_pretrained(reference)
        return gen.model, gen.tokenizer, gen.prompt_builder
    from llmner.modeling.loading import load_base_model

    model, tokenizer = load_base_model(reference)
    return model, tokenizer, PromptBuilder()


def sentences(corpus: str, n: int) -> list[str]:
    docs = [d for d in load_sentences(corpus, "dev") if d.text.strip()]
    return [d.text for d in docs[:n]]


def run_mode(decoder: TagGenerator, prefix: str, suffix: str, texts: list[str], types: list[str], mode: str, batch: int):
    outs = []
    start = time.perf_counter()
    for i in range(0, len(texts), batch):
        part = texts[i : i + batch]
        outs += decoder.generate(prefix, [t + suffix for t in part], part, [types] * len(part), mode)
    return outs, time.perf_counter() - start


def bench_corpus(decoder: TagGenerator, builder: PromptBuilder, corpus: str, n: int, batches: list[int], modes: list[str]):
    schema = get_schema(corpus)
    types = list(schema.type_names)
    texts = sentences(corpus, n)
    prefix, suffix = builder.split(decoder.tokenizer, "", schema)
    decoder.generate(prefix, [texts[0] + suffix], [texts[0]], [types], "constrained")  # warm-up + prefix KV
    src_tokens = sum(len(decoder.encode(t)) for t in texts) / len(texts)
    rows = []
    for batch in batches:
        results = {}
        for mode in modes:
            outs, seconds = run_mode(decoder, prefix, suffix, texts, types, mode, batch)
            results[mode] = (outs, seconds)
            print(f"  {corpus} batch {batch} {mode}: {seconds:.1f} s", flush=True)
        if "constrained" in results and "speculative" in results:
            con = [o.text for o in results["constrained"][0]]
            spec = [o.text for o in results["speculative"][0]]
            diff = [i for i, (a, b) in enumerate(zip(con, spec)) if a != b]
            # Checked after the table is printed (main): a mismatch would only come from an fp32 near-tie
            # between differently shaped forward passes, and the timings are still worth seeing.
            MISMATCHES.extend((corpus, batch, i, con[i], spec[i]) for i in diff)
        free = results.get("free")
        for mode, (outs, seconds) in results.items():
            passes = sum(o.forward_passes for o in outs) / len(outs)
            tokens = sum(o.output_tokens for o in outs) / len(outs)
            row = {
                "corpus": corpus, "batch": batch, "mode": mode, "sentences": len(outs),
                "passes_per_sentence": passes, "output_tokens_per_sentence": tokens,
                "sentences_per_s": len(outs) / seconds, "seconds": seconds,
                "budget_exhausted": sum(not o.finished for o in outs),
            }
            if free is not None:
                row["passes_ratio_vs_free"] = (sum(o.forward_passes for o in free[0]) / len(outs)) / passes
                row["time_ratio_vs_free"] = free[1] / seconds
            rows.append(row)
    return rows, src_tokens


def codec_lengths(tokenizer, n: int) -> dict[str, float]:
    docs = [d for d in load_sentences("genia", "dev") if d.text.strip()][:n]
    out = {}
    for name in ("inline", "lines", "json"):
        codec = get_codec(name)
        out[name] = sum(len(tokenizer(codec.encode(d.text, d.entities), add_special_tokens=False)["input_ids"])
                        for d in docs) / len(docs)
    out["source"] = sum(len(tokenizer(d.text, add_special_tokens=False)["input_ids"]) for d in docs) / len(docs)
    out["sentences"] = len(docs)
    return out


def table(rows: list[dict]) -> str:
    head = ("| corpus | batch | mode | passes/sent | out tok/sent | sent/s | passes: free/mode | time: free/mode | budget hit |\n"
            "|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        lines.append(
            f"| {r['corpus']} | {r['batch']} | {r['mode']} | {r['passes_per_sentence']:.1f} | "
            f"{r['output_tokens_per_sentence']:.1f} | {r['sentences_per_s']:.3f} | "
            f"{r.get('passes_ratio_vs_free', float('nan')):.2f}x | {r.get('time_ratio_vs_free', float('nan')):.2f}x | "
            f"{r['budget_exhausted']} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="generator bundle, base model dir/.gguf, or packaged name (default SmolLM2)")
    ap.add_argument("--sentences", type=int, default=50, help="NCBI-Disease dev sentences")
    ap.add_argument("--genia-sentences", type=int, default=None, help="GENIA dev sentences (default: --sentences)")
    ap.add_argument("--corpora", default="ncbi_disease,genia")
    ap.add_argument("--batch-sizes", default="1,8")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--draft-tokens", type=int, default=TagGenerationConfig().draft_tokens)
    ap.add_argument("--draft-budget", type=int, default=TagGenerationConfig().draft_budget)
    ap.add_argument("--branch-tokens", type=int, default=TagGenerationConfig().branch_tokens,
                    help="tag branches of the draft tree per row (0: the source alone)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--output", default=None, help="write the rows as JSON here")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model, tokenizer, builder = load_model(args.model)
    load_s = time.perf_counter() - t0
    config = TagGenerationConfig(draft_tokens=args.draft_tokens, draft_budget=args.draft_budget,
                          branch_tokens=args.branch_tokens)
    decoder = TagGenerator(model, tokenizer, config)
    batches = [int(b) for b in args.batch_sizes.split(",")]
    modes = [m for m in args.modes.split(",") if m]
    print(f"model {args.model or 'SmolLM2-135M-Instruct (packaged, no adapter)'} loaded in {load_s:.1f} s; "
          f"torch {torch.__version__}, {args.threads} threads, {platform.processor() or platform.machine()}; "
          f"budget {config.budget_factor:g} x source tokens + {config.budget_extra}; draft trunk <= {config.draft_tokens} tokens/row (adaptive), "
          f"+ {config.branch_tokens} tag-branch tokens/row, <= {config.draft_budget}/pass",
          flush=True)
    rows, sources = [], {}
    for corpus in args.corpora.split(","):
        n = args.sentences if corpus != "genia" or args.genia_sentences is None else args.genia_sentences
        corpus_rows, sources[corpus] = bench_corpus(decoder, builder, corpus, n, batches, modes)
        rows += corpus_rows
        print(table(corpus_rows), flush=True)  # each corpus as soon as it is done (long runs get cut)
    print()
    print(table(rows))
    print()
    print("source tokens per sentence: " + ", ".join(f"{c} {v:.1f}" for c, v in sources.items()))
    lengths = codec_lengths(tokenizer, 200)
    print(f"GENIA dev gold targets ({lengths['sentences']} sentences), tokens per sentence: "
          f"source {lengths['source']:.1f}, inline {lengths['inline']:.1f}, lines {lengths['lines']:.1f}, "
          f"json {lengths['json']:.1f}")
    total = sum(r["sentences"] for r in rows if r["mode"] == "speculative")
    print(f"speculative == constrained: {total - len(MISMATCHES)}/{total} sentences identical")
    for corpus, batch, i, con, spec in MISMATCHES:
        print(f"  MISMATCH {corpus} batch {batch} sentence {i}:\n    constrained {con!r}\n    speculative {spec!r}")
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps({"rows": rows, "codec_lengths": lengths, "config": {
            "draft_tokens": config.draft_tokens, "draft_budget": config.draft_budget,
            "branch_tokens": config.branch_tokens, "branch_length": config.branch_length,
            "branch_forks": config.branch_forks, "budget_factor": config.budget_factor,
            "budget_extra": config.budget_extra, "threads": args.threads, "model": args.model},
            "mismatches": MISMATCHES}, indent=2))
    assert not MISMATCHES, f"speculative != constrained on {len(MISMATCHES)} sentence(s)"


if __name__ == "__main__":
    main()
