"""The GPU segment script (benchmarks/campaign/gpu_segment.sh), run on the CPU with a tiny model: what
a lent device would run, end to end, minus CUDA and the carried wheels."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

from corpora_helpers import shared_data

from llmner.testing import tiny_causal_tokenizer, tiny_llama

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "campaign" / "gpu_segment.sh"


def run_script(tmp_path: Path, carry: Path, env_extra: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OUT": str(tmp_path / "out"), "CARRY": str(carry), "WORK": str(tmp_path / "work"),
           "PY": sys.executable, "DEVICE": "cpu", "BUDGET": "600", **env_extra}
    env.pop("LLMNER_DATA_DIR", None)
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def test_segment_unpacks_the_carried_corpora_trains_and_brings_the_adapter_back(tmp_path: Path) -> None:
    base = tmp_path / "base"
    tokenizer = tiny_causal_tokenizer()
    tiny_llama(tokenizer, hidden=32).save_pretrained(str(base))
    tokenizer.save_pretrained(str(base))
    carry = tmp_path / "carry"
    carry.mkdir()
    # The corpus travels as the kit packs it: one xz archive, read from where the script unpacks it.
    with tarfile.open(carry / "data.tar.xz", "w:xz") as tar:
        tar.add(shared_data() / "ncbi_disease", arcname="ncbi_disease")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"corpora": ["ncbi_disease"], "steps": 3, "batch_size": 2, "max_documents": 4,
                                  "lora_r": 4, "lora_alpha": 8, "definitions": "none", "checkpoint_every": 0,
                                  "exclude_test_overlap": False}))
    done = run_script(tmp_path, carry, {"BASE": str(base), "INIT_FROM": "", "CONFIG": str(config)}, "--seed", "3")
    assert done.returncode == 0, done.stdout + done.stderr
    out = tmp_path / "out"
    # The schedule finished inside the budget: the generator directory comes back as one file.
    with tarfile.open(out / "generator.tar") as tar:
        assert "run/adapter/adapter_model.safetensors" in tar.getnames()
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history] == [1, 2, 3]
    assert "torch" in (out / "versions.txt").read_text() and "segment: exit 0" in done.stdout
    assert (tmp_path / "work" / "data" / "ncbi_disease").is_dir()
    # A budget that ends the segment early brings the newest checkpoint back as a portable adapter.
    cut = run_script(tmp_path / "cut", carry, {"BASE": str(base), "INIT_FROM": "", "CONFIG": str(config), "BUDGET": "0.3"},
                     "--steps", "100000")
    assert cut.returncode == 0, cut.stdout + cut.stderr
    assert (tmp_path / "cut" / "out" / "portable" / "adapter" / "adapter_model.safetensors").is_file()
    assert "time budget of 0 s reached" in (tmp_path / "cut" / "out" / "train.log").read_text()
    # What comes back fits the device tool: at most 8 files, two folders down.
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) <= 8 and all(len(p.relative_to(out).parts) <= 3 for p in files)


def test_base_model_parts_that_do_not_join_stop_before_training(tmp_path: Path) -> None:
    carry = tmp_path / "carry"
    carry.mkdir()
    (carry / "gguf.part-1").write_bytes(b"first half ")
    (carry / "gguf.part-2").write_bytes(b"second half")
    whole = hashlib.sha256(b"first half second half and a third").hexdigest()   # part 3 never arrived
    (carry / "gguf.sha256").write_text(f"{whole}  model.gguf\n")
    failed = run_script(tmp_path, carry, {})
    assert failed.returncode == 3 and "do not join into model.gguf" in failed.stderr
    assert not (tmp_path / "out" / "train.log").exists()
    # Parts sort by number, not as text: part-10 comes after part-9.
    for i in range(1, 11):
        (carry / f"gguf.part-{i}").write_bytes(f"<{i}>".encode())
    joined = "".join(f"<{i}>" for i in range(1, 11)).encode()
    (carry / "gguf.sha256").write_text(f"{hashlib.sha256(joined).hexdigest()}  model.gguf\n")
    (tmp_path / "out").mkdir(exist_ok=True)
    ordered = run_script(tmp_path, carry, {"PY": "false"})    # stops at the version check, after the join
    assert (tmp_path / "work" / "model.gguf").read_bytes() == joined and ordered.returncode != 0
