"""Generator training step speed on the packaged SmolLM2, CPU: full batch vs shared prompt prefix.

Same model, same NCBI-Disease examples, interleaved repetitions measured side by side in one run.
Prints s/step, tokens/s (real tokens, padding excluded) and the ratio to the full computation, and
checks that both give the same loss. Usage:

    .venv/bin/python benchmarks/training.py [--batch-size 8] [--repeats 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lora-r", type=int, default=8)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from llmner.codecs import get_codec
    from llmner.data_processing.corpora import load_corpus
    from llmner.modeling.generator import GeneratorConfig, GeneratorModel
    from llmner.schema import get_schema
    from llmner.training.examples import ExampleConfig, text_examples, tokenize_examples
    from llmner.training.generator import _shared_prefix_length, batch_loss_sum

    schema = get_schema("ncbi_disease")
    generator = GeneratorModel.from_base(GeneratorConfig(lora_r=args.lora_r, lora_alpha=2 * args.lora_r, lora_dropout=0.0),
                                         [schema], device="cpu", dtype=torch.float32)
    model, tokenizer = generator.model, generator.tokenizer
    model.train()
    docs = load_corpus("ncbi_disease", "dev")[:20]
    texts = text_examples(docs, "ncbi_disease", get_codec("inline"), ExampleConfig(entity_free_ratio=0.0), None, tokenizer)
    examples = tokenize_examples(texts, tokenizer, generator.prompt_builder, schema, 512)
    batches = [examples[i * args.batch_size : (i + 1) * args.batch_size] for i in range(args.repeats)]
    timings: dict[bool, list[float]] = {False: [], True: []}
    tokens: dict[bool, int] = {False: 0, True: 0}
    losses: dict[bool, list[float]] = {False: [], True: []}
    for batch in batches:
        for share in (False, True):
            start = time.perf_counter()
            loss = batch_loss_sum(model, batch, tokenizer.pad_token_id, "cpu", share_prefix=share)
            loss.backward()
            model.zero_grad(set_to_none=True)
            timings[share].append(time.perf_counter() - start)
            tokens[share] += sum(len(e) for e in batch)
            losses[share].append(float(loss.detach()))
    prompt = statistics.mean(e.prompt_length for e in examples)
    shared = statistics.mean(_shared_prefix_length(b) for b in batches)
    print(f"NCBI-Disease dev, batch {args.batch_size}, {args.repeats} steps per mode, {args.threads} threads, "
          f"LoRA r={args.lora_r}; mean example {statistics.mean(len(e) for e in examples):.0f} tokens "
          f"(prompt {prompt:.0f}, shared prefix {shared:.0f})")
    print(f"{'mode':<16}{'s/step':>10}{'tokens/s':>11}{'vs full':>9}")
    base = statistics.median(timings[False])
    for share, name in ((False, "full batch"), (True, "shared prefix")):
        per_step = statistics.median(timings[share])
        print(f"{name:<16}{per_step:>10.2f}{tokens[share] / sum(timings[share]):>11.0f}{base / per_step:>8.2f}x")
    same = all(abs(a - b) <= 1e-4 * abs(a) for a, b in zip(losses[False], losses[True]))
    print(f"same loss: {same} ({losses[False]} vs {losses[True]})")
    if not same:
        raise SystemExit("shared-prefix loss differs from the full computation")


if __name__ == "__main__":
    main()
