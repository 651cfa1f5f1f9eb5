"""Training settings: one dataclass, checked in one place (what was expected, what arrived)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from errors import UserError

SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")
PRECISIONS = ("float32", "bfloat16", "float16")
DEFAULT_TARGETS = "all-linear"


@dataclass(frozen=True)
class TrainSettings:
    """Everything a run needs besides its data; stored with the job as JSON."""

    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.05
    target_modules: str = DEFAULT_TARGETS  # comma-separated module names, or "all-linear"
    learning_rate: float = 1e-3  # LoRA on a small model (the JSON demonstration used 2e-3)
    scheduler: str = "linear"
    warmup_ratio: float = 0.0
    epochs: float = 1.0
    max_steps: int = 0  # > 0 wins over epochs
    batch_size: int = 4
    grad_accum: int = 1
    cutoff_len: int = 256
    val_split: float = 0.1
    seed: int = 42
    save_steps: int = 0  # 0: about ten checkpoints over the run
    eval_steps: int = 0  # 0: as often as checkpoints
    precision: str = "float32"
    threads: int = 0  # torch threads in the runner; 0: all cores

    def targets(self) -> str | list[str]:
        names = [n.strip() for n in self.target_modules.split(",") if n.strip()]
        return DEFAULT_TARGETS if names in ([], [DEFAULT_TARGETS]) else names

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> TrainSettings:
        """Build from a (partial) dict, e.g. an API call's JSON; unknown keys are refused by name."""
        data = dict(data or {})
        known = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise UserError(f"unknown training settings {unknown}; known: {sorted(known)}")
        defaults = cls()
        values = {}
        for name, raw in data.items():
            default = getattr(defaults, name)
            values[name] = _coerce(name, raw, type(default))
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        """Refuse values no run could use."""
        _range("lora_rank", self.lora_rank, 1, 1024)
        _range("lora_alpha", self.lora_alpha, 0.01, 4096)
        _range("lora_dropout", self.lora_dropout, 0.0, 0.9)
        _range("learning_rate", self.learning_rate, 1e-8, 1.0)
        _range("warmup_ratio", self.warmup_ratio, 0.0, 0.5)
        _range("epochs", self.epochs, 0.01, 1000)
        _range("max_steps", self.max_steps, 0, 10_000_000)
        _range("batch_size", self.batch_size, 1, 1024)
        _range("grad_accum", self.grad_accum, 1, 1024)
        _range("cutoff_len", self.cutoff_len, 8, 131_072)
        _range("val_split", self.val_split, 0.0, 0.5)
        _range("save_steps", self.save_steps, 0, 10_000_000)
        _range("eval_steps", self.eval_steps, 0, 10_000_000)
        _range("threads", self.threads, 0, 1024)
        if self.scheduler not in SCHEDULERS:
            raise UserError(f"scheduler must be one of {SCHEDULERS}, got {self.scheduler!r}")
        if self.precision not in PRECISIONS:
            raise UserError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")


def _coerce(name: str, raw: Any, kind: type) -> Any:
    try:
        if kind is int:
            value = float(raw)
            if not value.is_integer():
                raise ValueError
            return int(value)
        if kind is float:
            value = float(raw)
            if not math.isfinite(value):
                raise ValueError
            return value
        return str(raw)
    except (TypeError, ValueError):
        what = "a whole number" if kind is int else "a number" if kind is float else "text"
        raise UserError(f"{name} must be {what}, got {raw!r}") from None


def _range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise UserError(f"{name} must be between {low:g} and {high:g}, got {value:g}")


def precisions_for(device: str, bf16_ok: bool) -> list[str]:
    """Precisions a device can train in: a CPU trains in float32 only (its half-precision training is slow or
    unsupported); CUDA adds bfloat16 where supported, else float16 (with float32 master weights)."""
    if device == "cuda":
        return ["bfloat16", "float32"] if bf16_ok else ["float16", "float32"]
    return ["float32"]
