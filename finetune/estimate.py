"""Memory and time a run will need, estimated before it starts (from the model's config, not its weights)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from finetune.settings import TrainSettings

OVERHEAD_BYTES = 400 << 20  # the runner's Python, torch and tokenizer before any tensor
# A CPU's rate for this work when no run has been measured yet: SmolLM2-135M trained at about 190 tokens/s on this
# project's 2 cores (6 x parameters x tokens/s ~ 1.5e11); a finished run's tokens/s replaces it for the same base.
DEFAULT_FLOPS = 1.5e11


@dataclass(frozen=True)
class Estimate:
    parameters: int
    lora_parameters: int
    memory_bytes: int
    steps: int
    tokens: int
    seconds: float
    measured: bool  # the time comes from an earlier run on this base

    def describe(self, available_bytes: int) -> str:
        basis = "from earlier runs on this base" if self.measured else "rough: no run on this base measured yet"
        return (f"{self.parameters / 1e6:.1f}M parameters, {self.lora_parameters / 1e6:.2f}M trained (LoRA) · "
                f"{self.steps:,} steps, {self.tokens:,} tokens · memory about **{self.memory_bytes / 2**30:.2f} GB** "
                f"({available_bytes / 2**30:.1f} GB available) · time about **{_duration(self.seconds)}** ({basis})")


def model_shape(location: str, local_only: bool) -> dict[str, Any]:
    """Parameter counts and sizes from the config alone (a meta-device model: no weights are read)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(location, local_files_only=local_only)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    linears = [(name, m.in_features, m.out_features) for name, m in model.named_modules()
               if isinstance(m, torch.nn.Linear)]
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return {"parameters": sum(p.numel() for p in model.parameters()), "linears": linears,
            "hidden": text.hidden_size, "layers": text.num_hidden_layers, "heads": text.num_attention_heads,
            "vocab": text.vocab_size}


def lora_parameters(shape: dict[str, Any], settings: TrainSettings) -> int:
    targets = settings.targets()
    total = 0
    for name, fan_in, fan_out in shape["linears"]:
        leaf = name.rsplit(".", 1)[-1]
        wanted = leaf != "lm_head" if targets == "all-linear" else leaf in targets
        total += settings.lora_rank * (fan_in + fan_out) if wanted else 0
    return total


def estimate(shape: dict[str, Any], settings: TrainSettings, steps: int, mean_tokens: float, longest: int,
             tokens_per_s: float | None) -> Estimate:
    """Peak memory: float32 weights, LoRA weights with gradients and Adam's two moments, and the activations of
    one micro-batch padded to its longest row: per layer about 136 bytes per hidden unit per token plus attention
    scores, and the logits six times over (values, softmax, gradients, copies). The factors are calibrated on a
    measured SmolLM2-135M run (peak 3.76 GB at batch 8 x 90 tokens; the first guess, half these, said 2.3)."""
    lora = lora_parameters(shape, settings)
    seq = min(settings.cutoff_len, max(longest, 1))
    per_token = shape["layers"] * (136 * shape["hidden"] + 20 * shape["heads"] * seq) + 24 * shape["vocab"]
    memory = OVERHEAD_BYTES + 4 * shape["parameters"] + 16 * lora + settings.batch_size * seq * per_token
    tokens = int(steps * settings.batch_size * settings.grad_accum * mean_tokens)
    rate = tokens_per_s or DEFAULT_FLOPS / (6 * shape["parameters"])
    return Estimate(shape["parameters"], lora, int(memory), steps, tokens, tokens / rate, tokens_per_s is not None)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
