"""Training checkpoints: everything needed to continue a run exactly where it stopped.

``<run>/checkpoints/step-000100/`` holds the adapter (peft format) and ``training_state.pt``:
optimizer, scheduler, RNG states (Python, NumPy, torch CPU and CUDA), sampler position, step, loss
history and elapsed time. A checkpoint is written to a temporary directory and renamed, so an
interrupted save never leaves a half checkpoint that ``latest_checkpoint`` would pick.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from llmner.errors import DataNotFoundError

STATE_NAME = "training_state.pt"
PORTABLE_STATE_NAME = "portable_state.json"   # a portable checkpoint: adapter + this, no optimizer, no pickle
CONFIG_NAME = "training_config.json"     # the run's settings, readable without torch
HISTORY_NAME = "history.jsonl"           # one JSON record per step, written by the training loop
_STEP_DIR = re.compile(r"^step-(\d+)$")


def rng_states() -> dict[str, Any]:
    import numpy as np
    import torch

    states: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    import numpy as np
    import torch

    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(root: str | Path, step: int, model: Any, state: dict[str, Any], keep: int = 2) -> Path:
    """Write ``root/step-<step>`` (adapter + state) atomically; keep only the newest ``keep``."""
    import torch

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"step-{step:06d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=root))
    try:
        model.save_pretrained(str(tmp / "adapter"))
        torch.save({**state, "step": step, "rng": rng_states()}, tmp / STATE_NAME)
        if "config" in state:
            (tmp / CONFIG_NAME).write_text(json.dumps(state["config"], indent=2) + "\n", encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    if keep > 0:
        for old in list_checkpoints(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return target


def export_portable(checkpoint: str | Path, dest: str | Path) -> Path:
    """A small checkpoint to commit: the adapter and a JSON state (step, schedule, sampler position,
    history, settings), without the optimizer moments (twice the adapter's size) or RNG states. A run
    resumed from it continues the same schedule and data stream with a fresh optimizer."""
    checkpoint, dest = Path(checkpoint), Path(dest)
    if not (checkpoint / STATE_NAME).is_file():
        raise DataNotFoundError(f"{checkpoint} is not a training checkpoint (no {STATE_NAME})")
    state = load_state(checkpoint)
    portable = {k: state[k] for k in ("step", "scheduler", "sampler", "history", "config", "elapsed_s",
                                       "fresh_optimizer_steps") if k in state}
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent if dest.parent.exists() else None))
    try:
        shutil.copytree(checkpoint / "adapter", tmp / "adapter")
        (tmp / PORTABLE_STATE_NAME).write_text(json.dumps(portable) + "\n", encoding="utf-8")
        if dest.exists():
            shutil.rmtree(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(tmp), dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def export_generator(checkpoint: str | Path, like: str | Path, dest: str | Path, name: str,
                     base: tuple[Any, Any] | None = None) -> Path:
    """A generator directory (what ``llmner bundle`` takes) from a checkpoint, full or portable, of a run
    that has not finished its schedule, or from the generator directory a finished run wrote (whose own
    settings are the training run's, not the shipped ones): the settings, schemas and base model of generator directory
    ``like`` (same LoRA rank and target modules), the checkpoint's LoRA weights, and a card of the run
    so far (its training settings, step, examples and losses, where the weights came from). ``base``: an
    in-memory (model, tokenizer) instead of ``like``'s base model reference."""
    from datetime import UTC, datetime
    from statistics import mean

    from llmner.modeling.generator import GeneratorModel
    from llmner.training import card as cardlib

    checkpoint = Path(checkpoint)
    if is_portable(checkpoint):
        state = json.loads((checkpoint / PORTABLE_STATE_NAME).read_text(encoding="utf-8"))
    elif is_finished_generator(checkpoint):
        state = finished_run_state(checkpoint)
    else:
        state = load_state(checkpoint)
    generator = GeneratorModel.from_pretrained(like, base=base, adapter=checkpoint)
    history = list(state.get("history") or [])
    losses = [float(h["loss"]) for h in history if "loss" in h]
    card = {
        "kind": "llmner generator",
        "name": name,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "base_model": generator.config.base_model,
        "generator_config": generator.config.to_dict(),
        "training": dict(state.get("config") or {}),
        "steps": int(state["step"]),
        "examples_seen": sum(int(h.get("examples", 0)) for h in history),   # this stage's (its history's) steps
        "first_loss": mean(losses[:20]) if losses else None,
        "final_loss": mean(losses[-20:]) if losses else None,
        "final_loss_window": min(20, len(losses)),
        "duration_s": state.get("elapsed_s"),
        "fresh_optimizer_steps": list(state.get("fresh_optimizer_steps") or []),
        "exported_from": str(checkpoint),
        "settings_from": str(like),
        "hardware": cardlib.hardware(),
        "git_commit": cardlib.git_commit(),
    }
    return generator.save_pretrained(dest, card=card)


def finished_run_state(generator_dir: str | Path) -> dict[str, Any]:
    """What ``export_generator`` reads from a checkpoint, rebuilt from a finished run's generator directory:
    its card (step, settings, elapsed time, fresh optimizer steps) and its ``history.jsonl``."""
    from llmner.modeling.generator import CARD_NAME

    generator_dir = Path(generator_dir)
    card = json.loads((generator_dir / CARD_NAME).read_text(encoding="utf-8"))
    history_file = generator_dir / HISTORY_NAME
    history = ([json.loads(line) for line in history_file.read_text(encoding="utf-8").splitlines() if line.strip()]
               if history_file.is_file() else [])
    return {"step": card["steps"], "config": card.get("training") or {}, "history": history,
            "elapsed_s": card.get("duration_s"), "fresh_optimizer_steps": card.get("fresh_optimizer_steps") or []}


def is_finished_generator(path: str | Path) -> bool:
    """A generator directory that a finished run wrote: its settings and card, no training state."""
    from llmner.modeling.generator import CARD_NAME, CONFIG_NAME

    path = Path(path)
    return not (path / STATE_NAME).is_file() and (path / CONFIG_NAME).is_file() and (path / CARD_NAME).is_file()


def is_portable(path: str | Path) -> bool:
    return (Path(path) / PORTABLE_STATE_NAME).is_file()


def load_adapter(path: str | Path, model: Any) -> None:
    """Put the LoRA weights of checkpoint ``path`` (``adapter/``) into the peft ``model``."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    weights = Path(path) / "adapter" / "adapter_model.safetensors"
    if not weights.is_file():
        raise DataNotFoundError(f"checkpoint {path} has no adapter/adapter_model.safetensors")
    device = next(model.parameters()).device
    result = set_peft_model_state_dict(model, load_file(str(weights), device=str(device)))
    unexpected = getattr(result, "unexpected_keys", None)
    if unexpected:
        raise DataNotFoundError(f"checkpoint {path}: adapter weights do not fit this model ({unexpected[:3]} ...)")


def list_checkpoints(root: str | Path) -> list[Path]:
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP_DIR.match(p.name))
             and (p / STATE_NAME).is_file()]
    return [p for _, p in sorted(found)]


def latest_checkpoint(root: str | Path) -> Path | None:
    found = list_checkpoints(root)
    return found[-1] if found else None


def load_state(checkpoint: str | Path) -> dict[str, Any]:
    """The training state of a full checkpoint. ``weights_only``: loading a checkpoint must never run
    code (a pickle can); only tensors, containers and the NumPy types of the RNG states are allowed."""
    import numpy as np
    import torch

    state_file = Path(checkpoint) / STATE_NAME
    if not state_file.is_file():
        raise DataNotFoundError(f"checkpoint {checkpoint} is incomplete (no {STATE_NAME})")
    with torch.serialization.safe_globals([np.dtype, type(np.dtype("uint32")), np.ndarray, np._core.multiarray._reconstruct]):
        return torch.load(state_file, map_location="cpu", weights_only=True)
