"""Generator training throughput: today's trainer against the new one, on the packaged SmolLM2, CPU.

The same training examples (``--per-corpus`` from each of the 8 corpora, drawn with a seed) go
through one optimizer step per batch of 8 under each configuration; configurations alternate in
rounds so that machine noise hits them alike. Prints examples/s and target tokens/s (the tokens the
loss is on) per configuration and the ratio to today's trainer. Usage:

    .venv/bin/python benchmarks/training.py [--per-corpus 4] [--rounds 2] [--threads 2] [--out FILE]
    .venv/bin/python benchmarks/training.py --breakdown [--batches 8]

The rows:
  before              mixed-corpus batches of 8, split by corpus so that each corpus's prompt
                      prefix runs once per batch (the trainer as it was), full logits, own schemas
  + one corpus/batch  batches of one corpus under one schema variant: one prefix pass per batch
  + target logits     the LM head only where a target token is predicted
  + length segments   a batch run as length-sorted segments where that saves padding
  + frozen below L    LoRA of layers < L frozen (forward only below L)
  + bf16 matmuls      the last row with its matrix multiplies in bf16 (CPU autocast: what the trainer's
                      ``precision: auto`` does on a CPU with native bf16, ``llmner.modeling.precision``)
  + frozen weights held in bf16
                      the last row with the frozen base weights held as bf16 copies, so that autocast
                      does not cast them every pass (``frozen_weights_in``; what the trainer does now)

``--breakdown`` measures where a step's time goes instead: the tokens of a batch by kind (shared
prompt prefix, prompt tail, copied answer tokens, tag tokens, padding) and the time of the prefix
pass, the body, and the LM head with its loss, over real one-corpus batches.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

CORPORA = ["ncbi_disease", "bc5cdr", "genia", "jnlpba", "bc2gm", "linnaeus", "s800", "cmeee"]


def configurations(frozen_below: list[int]) -> list[tuple[str, dict]]:
    before = {"batch_per_corpus": False, "supervised_logits_only": False, "vary_schema": False, "train_layers_from": 0,
              "length_segments": False, "bf16": False}
    one_corpus = {**before, "batch_per_corpus": True, "vary_schema": True}
    target_logits = {**one_corpus, "supervised_logits_only": True}
    segments = {**target_logits, "length_segments": True}
    rows = [("before", before), ("+ one corpus/batch", one_corpus), ("+ target logits", target_logits),
            ("+ length segments", segments)]
    rows += [(f"+ frozen below {layer}", {**segments, "train_layers_from": layer}) for layer in frozen_below]
    rows.append(("+ bf16 matmuls", {**rows[-1][1], "bf16": True}))
    rows.append(("+ frozen weights held in bf16", {**rows[-1][1], "hold_frozen_bf16": True}))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-corpus", type=int, default=4, help="examples drawn from each corpus")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-documents", type=int, default=120, help="documents read per corpus")
    parser.add_argument("--frozen-below", type=int, nargs="*", default=[10, 20])
    parser.add_argument("--out", type=Path, default=None, help="also write the table (markdown) here")
    parser.add_argument("--breakdown", action="store_true", help="measure where a step's time goes")
    parser.add_argument("--batches", type=int, default=8, help="batches timed by --breakdown")
    args = parser.parse_args()
    if args.breakdown:
        breakdown(args)
        return

    import torch

    torch.set_num_threads(args.threads)
    setup = _setup(args)
    generator, pools, codec, tokenizer = setup["generator"], setup["pools"], setup["codec"], setup["tokenizer"]
    from llmner.training.examples import render_examples
    from llmner.modeling.precision import frozen_weights_in
    from llmner.training.generator import batch_loss_sum, freeze_lower_layers, length_segments
    from llmner.training.schema_variation import SchemaVariation, identity_variant

    rng = random.Random(0)
    chosen = {name: rng.sample(pool, min(args.per_corpus, len(pool))) for name, pool in pools.items()}
    mixed = [e for examples in chosen.values() for e in examples]
    rng.shuffle(mixed)
    model = generator.model
    model.train()
    lora = [p for n, p in model.named_parameters() if "lora_" in n]
    variation = SchemaVariation()
    schemas = setup["schemas"]

    def batches(cfg: dict) -> list[list]:
        """The configuration's batches over the same examples: each a list of one-corpus groups."""
        out = []
        if cfg["batch_per_corpus"]:
            for name, examples in chosen.items():
                for i in range(0, len(examples), args.batch_size):
                    variant = variation.draw(schemas[name], f"bench/{name}/{i}") if cfg["vary_schema"] else identity_variant(schemas[name])
                    out.append([render_examples(examples[i:i + args.batch_size], variant, codec, tokenizer, generator.prompt_builder)])
        else:
            for i in range(0, len(mixed), args.batch_size):
                groups: dict[str, list] = {}
                for e in mixed[i:i + args.batch_size]:
                    groups.setdefault(e.corpus, []).append(e)
                out.append([render_examples(g, identity_variant(schemas[name]), codec, tokenizer, generator.prompt_builder)
                            for name, g in groups.items()])
        return out

    rows = configurations(args.frozen_below)
    seconds = {name: 0.0 for name, _ in rows}
    examples_done = {name: 0 for name, _ in rows}
    targets = {name: 0 for name, _ in rows}
    for rnd in range(args.rounds):
        for name, cfg in rows:
            for p in lora:
                p.requires_grad_(True)
            if cfg["train_layers_from"]:
                freeze_lower_layers(model, cfg["train_layers_from"])
            params = [p for p in lora if p.requires_grad]
            optimizer = torch.optim.AdamW(params, lr=1e-6)
            with frozen_weights_in(model, torch.bfloat16 if cfg.get("hold_frozen_bf16") else None):
                started = time.perf_counter()
                for batch in batches(cfg):
                    total = sum(e.target_tokens for g in batch for e in g)
                    for group in batch:
                        for segment in length_segments(group) if cfg["length_segments"] else [group]:
                            loss = batch_loss_sum(model, segment, tokenizer.pad_token_id, "cpu", use_bf16=cfg["bf16"],
                                                  share_prefix=True,
                                                  supervised_logits_only=cfg["supervised_logits_only"]) / total
                            loss.backward()
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                    examples_done[name] += sum(len(g) for g in batch)
                    targets[name] += total
                elapsed = time.perf_counter() - started
            seconds[name] += elapsed
            print(f"round {rnd + 1} {name:<20} {elapsed:.1f} s for {len(mixed)} examples", flush=True)
    from llmner.modeling.precision import cpu_has_native_bf16

    lines = [f"Generator training throughput: SmolLM2-135M-Instruct + LoRA r=8 (all projections), fp32 unless the row says "
             f"bf16 (this CPU {'has' if cpu_has_native_bf16() else 'lacks'} native bf16), {args.threads} threads, "
             f"CPU; the same {len(mixed)} examples ({args.per_corpus} from each of {len(CORPORA)} corpora) per configuration, "
             f"batches of {args.batch_size}, {args.rounds} rounds alternating.", "",
             "| configuration | examples/s | target tokens/s | examples/s vs before |", "|---|---|---|---|"]
    base_rate = examples_done["before"] / seconds["before"]
    for name, _ in rows:
        rate = examples_done[name] / seconds[name]
        lines.append(f"| {name} | {rate:.2f} | {targets[name] / seconds[name]:.0f} | {rate / base_rate:.2f}x |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


def _setup(args: argparse.Namespace) -> dict:
    import torch

    from llmner.codecs import get_codec
    from llmner.modeling.generator import GeneratorModel
    from llmner.training.examples import ExampleConfig, text_examples, tokenize_examples
    from llmner.training.generator import GeneratorTrainingConfig, load_corpora

    cfg = GeneratorTrainingConfig(output="unused", corpora=CORPORA, max_documents=args.max_documents, lora_r=8,
                                  lora_alpha=16, lora_dropout=0.0, exclude_test_overlap=False, max_length=1024)
    corpora = load_corpora(cfg)
    generator = GeneratorModel.from_base(cfg.generator_config(), [c.schema for c in corpora], dtype=torch.float32)
    codec, tokenizer = get_codec("inline"), generator.tokenizer
    pools = {}
    for c in corpora:     # the trainer's examples: entity-free ones subsampled, over-long ones skipped
        texts = text_examples(c.documents, c.name, codec, ExampleConfig(), None, tokenizer)
        kept = {e.id for e in tokenize_examples(texts, tokenizer, generator.prompt_builder, c.schema, cfg.max_length)}
        pools[c.name] = [e for e in texts if e.id in kept]
    print("examples per corpus: " + ", ".join(f"{k} {len(v)}" for k, v in pools.items()), flush=True)
    pools = {k: v for k, v in pools.items() if v}
    return {"generator": generator, "pools": pools, "codec": codec, "tokenizer": tokenizer,
            "schemas": {c.name: c.schema for c in corpora}}


def breakdown(args: argparse.Namespace) -> None:
    """Tokens by kind and time by stage over real one-corpus batches (today's LoRA r=8 model)."""
    import re

    import torch
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    from llmner.codecs.inline import TYPE_NAME
    from llmner.training.examples import IGNORE_INDEX, collate, render_examples
    from llmner.training.generator import body_and_head, length_segments, prompt_tail, shared_prefix_length
    from llmner.training.schema_variation import SchemaVariation

    setup = _setup(args)
    generator, pools, tokenizer, codec = setup["generator"], setup["pools"], setup["tokenizer"], setup["codec"]
    model = generator.model
    model.train()
    body, head = body_and_head(model)
    variation, rng = SchemaVariation(), random.Random(0)
    names = list(pools)
    kinds = {"shared prefix": 0, "prompt tail": 0, "answer: copied text": 0, "answer: tag tokens": 0, "padding": 0}
    segmented_padding = 0
    times = {"prefix pass (forward)": 0.0, "body: forward over the rest, backward of all": 0.0,
             "LM head + loss, every position": 0.0, "LM head + loss, target positions only": 0.0}
    marker = re.compile(r"</?" + TYPE_NAME.pattern + ">")
    for b in range(args.batches):
        name = names[b % len(names)]
        batch_texts = rng.sample(pools[name], min(args.batch_size, len(pools[name])))
        variant = variation.draw(setup["schemas"][name], f"breakdown/{b}")
        examples = render_examples(batch_texts, variant, codec, tokenizer, generator.prompt_builder)
        prefix = shared_prefix_length(examples)
        tails = [prompt_tail(e, prefix) for e in examples]
        batch = collate(tails, tokenizer.pad_token_id)
        width = batch.input_ids.size(1)
        kinds["shared prefix"] += prefix
        kinds["padding"] += len(tails) * width - sum(len(t) for t in tails)
        for segment in length_segments(examples):
            seg_prefix = shared_prefix_length(segment) if len(segment) > 1 else 0
            segmented_padding += len(segment) * (max(map(len, segment)) - seg_prefix) - sum(len(e) - seg_prefix for e in segment)
        for e in examples:
            target_ids = e.input_ids[e.prompt_length:]
            pieces = [tokenizer.decode([tid]) for tid in target_ids]
            spans = [m.span() for m in marker.finditer("".join(pieces))]
            pos = tag_tokens = 0
            for piece in pieces:          # a token that overlaps a marker's characters is a tag token
                start, pos = pos, pos + len(piece)
                tag_tokens += any(start < end and begin < pos for begin, end in spans)
            kinds["prompt tail"] += e.prompt_length - prefix
            kinds["answer: tag tokens"] += tag_tokens
            kinds["answer: copied text"] += len(target_ids) - tag_tokens
        t0 = time.perf_counter()
        head_ids = torch.tensor([examples[0].input_ids[:prefix]])
        cache = model(input_ids=head_ids, use_cache=True, logits_to_keep=1).past_key_values
        cache.batch_repeat_interleave(len(examples))
        t1 = time.perf_counter()
        attention = torch.cat([torch.ones((len(examples), prefix), dtype=torch.long), batch.attention_mask], dim=1)
        positions = torch.arange(prefix, prefix + width).unsqueeze(0).expand(len(examples), -1)
        hidden = body(input_ids=batch.input_ids, attention_mask=attention, position_ids=positions,
                      past_key_values=cache, use_cache=True).last_hidden_state
        t2 = time.perf_counter()
        targets = batch.labels[:, 1:]
        full = F.cross_entropy(head(hidden[:, :-1]).float().reshape(-1, head.out_features), targets.reshape(-1),
                               ignore_index=IGNORE_INDEX, reduction="sum")
        grad_full = torch.autograd.grad(full, hidden, retain_graph=True)[0]
        t3 = time.perf_counter()
        keep = targets != IGNORE_INDEX
        only = F.cross_entropy(head(hidden[:, :-1][keep]).float(), targets[keep], reduction="sum")
        grad_only = torch.autograd.grad(only, hidden, retain_graph=True)[0]
        t4 = time.perf_counter()
        hidden.backward(grad_only)            # body backward (and the prefix's, through the cache)
        t5 = time.perf_counter()
        assert torch.allclose(grad_full, grad_only, atol=1e-5), "target-only head must give the same gradient"
        model.zero_grad(set_to_none=True)
        times["prefix pass (forward)"] += t1 - t0        # its backward runs inside hidden.backward
        times["body: forward over the rest, backward of all"] += (t2 - t1) + (t5 - t4)
        times["LM head + loss, every position"] += t3 - t2
        times["LM head + loss, target positions only"] += t4 - t3
    total_tokens = sum(kinds.values())
    print(f"{args.batches} one-corpus batches of {args.batch_size} (corpora in turn), schema variants, "
          f"{args.threads} threads; SmolLM2-135M + LoRA r=8")
    print("| token kind | tokens | share |\n|---|---|---|")
    for k, v in kinds.items():
        print(f"| {k} | {v} | {v / total_tokens:.1%} |")
    print(f"padding with length segments (llmner.training.generator.length_segments): {segmented_padding} tokens, "
          f"{segmented_padding / kinds['padding']:.0%} of the unsegmented padding")
    step = times["prefix pass (forward)"] + times["body: forward over the rest, backward of all"] + times["LM head + loss, every position"]
    print("| stage | seconds per batch | share of a step (full LM head) |\n|---|---|---|")
    for k, v in times.items():
        print(f"| {k} | {v / args.batches:.2f} | {v / step:.1%} |")


def _history(output: Path) -> list[dict]:
    import json

    return [json.loads(line) for line in (Path(output) / "history.jsonl").read_text().splitlines() if line.strip()]


if __name__ == "__main__":
    main()
