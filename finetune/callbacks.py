"""TrainerCallbacks that connect a run to the job store: progress and losses, stop requests, NaN, CPU yielding."""

from __future__ import annotations

import math
import time
from pathlib import Path

from transformers import TrainerCallback

from finetune.jobs import JobStore


class JobCallback(TrainerCallback):
    """Writes steps, ETA, losses and log lines; stops at a stop request (saving a checkpoint first) or on NaN.

    Args:
        store: the shared job store.
        job_id: this run's job.
        tokens_per_step: average training tokens in one optimizer step (for tokens/s).
        busy_file: while its mtime is fresh, someone is generating: pause between steps.
    """

    def __init__(self, store: JobStore, job_id: int, tokens_per_step: float, busy_file: Path | None = None):
        self.store, self.job_id, self.tokens_per_step = store, job_id, tokens_per_step
        self.busy_file = busy_file
        self.nan_message = ""
        self.stopped = False
        self.paused_s = 0.0
        self._start = time.monotonic()
        self._first_step = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self._start, self._first_step = time.monotonic(), state.global_step
        self.store.update(self.job_id, max_steps=state.max_steps, step=state.global_step)

    def on_step_begin(self, args, state, control, **kwargs):
        waited = self._yield_cpu()
        if waited > 1:
            self.store.log(self.job_id, f"paused {waited:.0f} s while someone was generating")

    def on_step_end(self, args, state, control, **kwargs):
        done = state.global_step - self._first_step
        active = max(1e-6, time.monotonic() - self._start - self.paused_s)
        eta = active / max(done, 1) * (state.max_steps - state.global_step)
        self.store.update(self.job_id, step=state.global_step, eta_s=eta,
                          tokens_per_s=done * self.tokens_per_step / active)
        if self.store.get(self.job_id).stop_requested:
            self.stopped = True
            control.should_save = True  # a stopped run keeps its progress as a checkpoint to resume from
            control.should_training_stop = True

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        step = state.global_step
        for key, kind in (("loss", "train"), ("eval_loss", "validation")):
            if key not in logs:
                continue
            value = float(logs[key])
            if not math.isfinite(value):
                self._nan(control, step, kind, value)
                return
            self.store.add_loss(self.job_id, step, kind, value)
        every = max(1, state.max_steps // 50)  # about fifty loss lines a run; the curve has every step
        if "eval_loss" in logs or ("loss" in logs and (step % every == 0 or step == state.max_steps)):
            shown = {k: round(v, 5) if isinstance(v, float) else v for k, v in logs.items()}
            self.store.log(self.job_id, f"step {step}/{state.max_steps}: {shown}")

    def on_save(self, args, state, control, **kwargs):
        self.store.log(self.job_id, f"saved checkpoint-{state.global_step}")

    def _nan(self, control, step: int, kind: str, value: float) -> None:
        self.nan_message = (f"the {kind} loss became {value} at step {step}: training stopped and the weights of "
                            f"this step were not saved; resume from an earlier checkpoint with a lower learning "
                            f"rate, or check the data and the base model")
        control.should_training_stop = True
        control.should_save = False
        control.should_evaluate = False

    def _yield_cpu(self) -> float:
        """Wait while the app says a generation runs; returns the seconds waited."""
        if self.busy_file is None:
            return 0.0
        start = time.monotonic()
        while _fresh(self.busy_file):
            time.sleep(0.1)
        waited = time.monotonic() - start
        self.paused_s += waited
        return waited


def _fresh(path: Path, within_s: float = 1.0) -> bool:
    try:
        return time.time() - path.stat().st_mtime < within_s
    except OSError:
        return False
