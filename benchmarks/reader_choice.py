"""The reader's settings, chosen where they may be, and what it scores: from a finished
``llmner train reader`` run (its cached features; no LM pass).

- The span-score threshold, chosen on the held-out training records (never trained on): strict P/R/F1
  at each threshold of ``llmner.training.reader.THRESHOLD_GRID``.
- Dev strict F1 overall and per type at that threshold, with the head's weights as trained (fp32) and as
  a bundle stores them (fp16, ``Reader.save_pretrained(half=True)``): what shipping at half the bytes costs.
- The dev F1 by epoch from the run's card (printed after each epoch; nothing chosen on it).

    python benchmarks/reader_choice.py --run runs/reader-cmeee --corpus cmeee --out benchmarks/results/reader_choice.md
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="the run directory of llmner train reader")
    parser.add_argument("--corpus", default="cmeee")
    parser.add_argument("--test", action="store_true",
                        help="also score the test split at the chosen threshold (fp16 weights; the LM reads it once, kept "
                             "under the run's features/); nothing is chosen on it")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from llmner.data_processing.corpora import load_corpus
    from llmner.modeling.reader import CHARS_NAME, CONFIG_NAME, Reader, ReaderConfig
    from llmner.training.reader import (
        FEATURES_DIR,
        cached_features,
        choose_threshold,
        predict,
        score_at,
        split_held_out,
        threshold_table,
    )

    card = json.loads((args.run / "training_card.json").read_text(encoding="utf-8"))
    saved = args.run / "reader"

    def head(path: Path) -> Reader:
        # The head alone (the features are cached): no LM is loaded.
        config = ReaderConfig.from_dict(json.loads((path / CONFIG_NAME).read_text(encoding="utf-8")))
        reader = Reader(config, json.loads((path / CHARS_NAME).read_text(encoding="utf-8")))
        reader.load_weights(path)
        return reader

    fp32 = head(saved)
    _, held_out = split_held_out(load_corpus(args.corpus, "train"), card["config"]["hold_out_every"])
    dev = load_corpus(args.corpus, "dev")[: card["dev_records"]]
    features = args.run / FEATURES_DIR
    held_features = cached_features(fp32, held_out, features, "held_out")
    dev_features = cached_features(fp32, dev, features, "dev")
    held_predicted = predict(fp32, held_out, held_features)
    table = threshold_table(held_out, held_predicted)
    chosen = choose_threshold(table)
    lines = [(f"Run `{args.run}`: {card['trained_records']} training records, {card['held_out_records']} held out, "
              f"{card['steps']} steps, {card['train_seconds']:.0f} s of training; dev F1 by epoch (printed, nothing chosen "
              f"on it): {', '.join(f'{x:.1f}' for x in card['dev_f1_by_epoch'])}."), "",
             f"Span-score threshold on the {len(held_out)} held-out training records (chosen: {chosen}):", "",
             "| threshold | P | R | F1 |", "|---|---|---|---|"]
    lines += [f"| {r['threshold']:.1f}{' (chosen)' if r['threshold'] == chosen else ''} | {100 * r['precision']:.1f} | "
              f"{100 * r['recall']:.1f} | {100 * r['f1']:.1f} |" for r in table]
    with tempfile.TemporaryDirectory() as tmp:
        fp32.save_pretrained(tmp, half=True)
        fp16 = head(Path(tmp))
        size = {"fp32": (saved / "reader_head.safetensors").stat().st_size, "fp16": (Path(tmp) / "reader_head.safetensors").stat().st_size}
    rows = {}
    for name, reader in (("fp32", fp32), ("fp16", fp16)):
        rows[name] = score_at(dev, predict(reader, dev, dev_features), chosen)
    types = sorted(rows["fp32"].per_type)
    lines += ["", f"{len(dev)} {args.corpus} dev records (whole records, as trained), strict F1 at threshold {chosen}:", "",
              "| head weights | bytes | F1 | P | R | " + " | ".join(types) + " |", "|---" * (5 + len(types)) + "|"]
    for name, report in rows.items():
        c = report.strict
        lines.append(f"| {name} | {size[name]:,} | {100 * c.f1:.1f} | {100 * c.precision:.1f} | {100 * c.recall:.1f} | "
                     + " | ".join(f"{100 * report.per_type[t].f1:.1f}" for t in types) + " |")
    if args.test:
        from llmner.modeling.reader import FrozenEncoder

        test = load_corpus(args.corpus, "test")
        fp16.encoder = FrozenEncoder(fp16.config.base_model)
        c = score_at(test, predict(fp16, test, cached_features(fp16, test, features, "test")), chosen).strict
        lines += ["", (f"{len(test)} {args.corpus} test records (whole records), fp16 weights, threshold {chosen}: strict F1 "
                  f"{100 * c.f1:.1f} (P {100 * c.precision:.1f}, R {100 * c.recall:.1f}).")]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out is not None:
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
