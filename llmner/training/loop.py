"""The optimisation loop shared by the generator and the selector trainers.

Each trainer says what one step computes (``step_fn(step) -> record``: forward, backward, and the
numbers to log) and what else its checkpoints hold (the generator's sampler position). The loop
owns the rest, the same way for both: seeding, the schedule (linear warmup, then linear decay to
zero at ``steps``), gradient clipping, the progress bar or log lines, the history (one record per
step: loss, lr, seconds, ...), periodic checkpoints, segments (``stop_after``) and resume (from a
full checkpoint exactly, or from a portable one with a fresh optimizer).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from llmner.training import checkpoint as ckpt
from llmner.training.checkpoint import HISTORY_NAME


@dataclass(slots=True)
class LoopSettings:
    steps: int
    warmup: int = 0
    max_grad_norm: float = 1.0
    checkpoint_every: int = 0
    keep_checkpoints: int = 2
    stop_after: int | None = None
    cpu_budget_s: float | None = None   # end the segment once its steps used this much process CPU time
    time_budget_s: float | None = None  # end the segment after this many wall-clock seconds (a lent GPU's
                                        # minutes: on CUDA the CPU time of a step says little)
    log_every: int = 1
    name: str = "train"


@dataclass(slots=True)
class LoopState:
    """What a run has done so far (restored on resume)."""

    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    elapsed_before: float = 0.0
    fresh_optimizer_steps: list[int] = field(default_factory=list)
    resumed_from: str | None = None


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def linear_warmup_decay(warmup: int, total: int) -> Callable[[int], float]:
    """LR factor: (step + 1) / (warmup + 1) during warmup, then linear decay to 0 at ``total``."""
    def factor(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


class TrainingLoop:
    """Runs steps ``state.step .. min(steps, stop_after)`` with one optimizer and one schedule.

    ``checkpoint_model``: what ``save_pretrained`` writes into a checkpoint's ``adapter/`` (the
    model, or a wrapper that saves it at full precision). ``load_weights(path)`` puts a
    checkpoint's weights back into the model on resume.
    """

    def __init__(self, optimizer: Any, params: Sequence[Any], settings: LoopSettings, checkpoints: Path,
                 checkpoint_model: Any, load_weights: Callable[[Path], None], progress: bool = True,
                 log: Callable[[str], None] = print) -> None:
        import torch

        self.optimizer = optimizer
        self.params = list(params)
        self.settings = settings
        self.checkpoints = Path(checkpoints)
        self.checkpoint_model = checkpoint_model
        self.load_weights = load_weights
        self.progress = progress
        self.log = log
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_warmup_decay(settings.warmup, settings.steps))
        self.state = LoopState()
        self._segment_start = time.perf_counter()

    # -- resume -------------------------------------------------------------------------------------
    def resume(self, found: Path | None, check: Callable[[Mapping[str, Any], Path], None] | None = None,
               restore_extra: Callable[[Mapping[str, Any]], None] | None = None, seed: int = 0) -> bool:
        """Continue from checkpoint ``found`` (None: start at step 0). A full checkpoint restores the
        optimizer and RNG states (the run continues exactly); a portable one starts a fresh
        optimizer, recorded in ``state.fresh_optimizer_steps``. ``check(saved, path)`` refuses a
        checkpoint of another run; ``restore_extra(saved)`` restores the trainer's own state."""
        if found is None:
            return False
        portable = ckpt.is_portable(found)
        if portable:
            self.load_weights(found)
            saved: Mapping[str, Any] = json.loads((found / ckpt.PORTABLE_STATE_NAME).read_text(encoding="utf-8"))
        else:
            self.load_weights(found)
            saved = ckpt.load_state(found)
        if check is not None:
            check(saved, found)
        self.scheduler.load_state_dict(saved["scheduler"])
        if restore_extra is not None:
            restore_extra(saved)
        state = self.state
        state.step = int(saved["step"])
        state.history = list(saved.get("history", ()))
        state.elapsed_before = float(saved.get("elapsed_s", 0.0))
        state.fresh_optimizer_steps = list(saved.get("fresh_optimizer_steps", ()))
        state.resumed_from = str(found)
        if portable:
            state.fresh_optimizer_steps.append(state.step)
            seed_everything(seed + state.step)
            self.log(f"resumed from portable checkpoint {found} at step {state.step} with a fresh optimizer")
        else:
            self.optimizer.load_state_dict(saved["optimizer"])
            ckpt.restore_rng_states(saved["rng"])
            self.log(f"resumed from {found} at step {state.step}")
        return True

    # -- the loop -----------------------------------------------------------------------------------
    def run(self, step_fn: Callable[[int], dict[str, Any]], extra_state: Callable[[], dict[str, Any]] | None = None,
            after_step: Callable[[dict[str, Any]], None] | None = None) -> bool:
        """Run to ``steps`` (or ``stop_after``); returns True when the schedule is finished. A
        segment that stops early leaves a checkpoint to resume from."""
        import torch

        s, state = self.settings, self.state
        end = min(s.steps, s.stop_after) if s.stop_after else s.steps
        self._segment_start = time.perf_counter()
        # Process CPU time, not wall time: ablation arms that share the cores with other work still
        # get equal compute (all threads of this process count).
        cpu_start = time.process_time()
        with _Progress(self.progress, s.name, s.steps, state.step) as bar:
            while state.step < end:
                if s.cpu_budget_s is not None and time.process_time() - cpu_start >= s.cpu_budget_s:
                    self.log(f"CPU budget of {s.cpu_budget_s:.0f} s reached at step {state.step}")
                    break
                if s.time_budget_s is not None and time.perf_counter() - self._segment_start >= s.time_budget_s:
                    self.log(f"time budget of {s.time_budget_s:.0f} s reached at step {state.step}")
                    break
                t0 = time.perf_counter()
                record = dict(step_fn(state.step))
                if s.max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(self.params, s.max_grad_norm)
                lr = self.scheduler.get_last_lr()[0]
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                state.step += 1
                seconds = time.perf_counter() - t0
                record = {"step": state.step, **record, "lr": lr, "seconds": round(seconds, 4),
                          "segment_cpu_s": round(time.process_time() - cpu_start, 3)}
                if after_step is not None:
                    after_step(record)
                state.history.append(record)
                bar.update(state.step, record)
                if s.log_every and not self.progress and state.step % s.log_every == 0:
                    self.log(f"{s.name} step {state.step}/{s.steps} " + _describe(record))
                if s.checkpoint_every and state.step % s.checkpoint_every == 0 and state.step < s.steps:
                    self.save_checkpoint(extra_state)
        finished = state.step >= s.steps
        if not finished and not (s.checkpoint_every and state.step % s.checkpoint_every == 0):
            self.save_checkpoint(extra_state)
        if not finished:
            self.log(f"stopped at step {state.step}/{s.steps}; continue with --resume")
        return finished

    def save_checkpoint(self, extra_state: Callable[[], dict[str, Any]] | None = None) -> Path:
        state = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                 "history": self.state.history, "elapsed_s": self.elapsed(),
                 "fresh_optimizer_steps": self.state.fresh_optimizer_steps, **(extra_state() if extra_state else {})}
        return ckpt.save_checkpoint(self.checkpoints, self.state.step, self.checkpoint_model, state,
                                    self.settings.keep_checkpoints)

    def elapsed(self) -> float:
        """Seconds of training over every segment of the run so far."""
        return self.state.elapsed_before + time.perf_counter() - self._segment_start

    def write_history(self, output: Path) -> Path:
        output.mkdir(parents=True, exist_ok=True)
        path = output / HISTORY_NAME
        with path.open("w", encoding="utf-8") as f:
            for record in self.state.history:
                f.write(json.dumps(record) + "\n")
        return path


def _describe(record: Mapping[str, Any]) -> str:
    parts = [f"loss {record['loss']:.4f}", f"lr {record['lr']:.2e}"]
    if record.get("tokens") and record.get("seconds"):
        parts.append(f"{record['tokens'] / record['seconds']:.0f} tokens/s")
    parts.append(f"{record['seconds']:.2f} s/step")
    parts += [f"{k} {v:.4f}" for k, v in record.items() if k.startswith("dev_") and isinstance(v, float)]
    return " ".join(parts)


class _Progress:
    """A rich progress bar on stderr with the loss (a no-op when disabled)."""

    def __init__(self, enabled: bool, name: str, total: int, completed: int) -> None:
        self.enabled, self.name, self.total, self.completed = enabled, name, total, completed
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> Self:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(TextColumn(f"[bold]{self.name}"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("loss {task.fields[loss]}"), TimeRemainingColumn(),
                                      console=Console(stderr=True))
            self._progress.__enter__()
            self._task = self._progress.add_task("train", total=self.total, completed=self.completed, loss="-")
        return self

    def update(self, step: int, record: Mapping[str, Any]) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=step, loss=f"{record['loss']:.4f}")

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)


__all__ = ["HISTORY_NAME", "LoopSettings", "LoopState", "TrainingLoop", "linear_warmup_decay", "seed_everything"]
