"""Decoding-sized linear layers split across CPU cores.

Decoding multiplies a handful of rows (one per sequence in the batch) by every weight matrix. For that shape torch's
CPU `linear` runs on one core and, for 2-8 rows, leaves the matrix-vector path for a matrix-product path that is
1.5-2x slower than one row. Splitting each weight into `parts` blocks of output features and multiplying them as one
`bmm` runs the blocks on separate cores. On this project's 2-core machine the embedded SmolLM2's decoding step went
from 54 / 86 / 110 / 84 ms to 35 / 50 / 60 / 52 ms at batch 1 / 2 / 3 / 4 (`scripts/bench_batch.py` prints it as
`forward_step_ms_by_batch`). Inputs of more than MAX_ROWS rows (long prompts) keep torch's own path. The weights
are views, never copied. An odd number of rows (3, 5, 7 sequences) gets one zero row more: the model's linear layers
took 46 / 37 ms for 3 / 4 rows and 50 / 43 ms for 7 / 8, so a batch that lost one sequence slowed down.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MAX_ROWS = 32  # prompts keep torch's path: in the app's batch thread a split 45-token prefill was no faster


class SplitLinear(torch.nn.Linear):
    """An `nn.Linear` whose small inputs are multiplied block by block in one `bmm`.

    Same weights; the results equal torch's up to float rounding.
    """

    split_parts: int = 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight
        out_features, in_features = weight.shape
        rows = x.numel() // in_features if in_features else 0
        if rows == 0 or rows > MAX_ROWS or x.dtype != weight.dtype:
            return F.linear(x, weight, self.bias)
        parts = self.split_parts
        blocks = weight.view(parts, out_features // parts, in_features).transpose(1, 2)
        flat = x.reshape(rows, in_features)
        if rows % 2 and rows > 1:  # odd row counts take a slower kernel: one zero row more is cheaper (see above)
            flat = torch.cat([flat, flat.new_zeros(1, in_features)])
        out = torch.bmm(flat.expand(parts, len(flat), in_features), blocks)  # (parts, rows, out_features / parts)
        out = out[:, :rows].transpose(0, 1).reshape(*x.shape[:-1], out_features)
        return out if self.bias is None else out + self.bias


def split_linears(model: torch.nn.Module, parts: int) -> int:
    """Make the model's float32 CPU linear layers split their small inputs into `parts` blocks; returns how many."""
    if parts < 2:
        return 0
    count = 0
    for module in model.modules():
        if type(module) is not torch.nn.Linear or "forward" in vars(module):  # subclasses and hooked modules stay
            continue
        weight = module.weight
        if weight.device.type != "cpu" or weight.dtype != torch.float32 or module.out_features % parts:
            continue
        if not weight.is_contiguous():
            continue
        module.__class__ = SplitLinear
        module.split_parts = parts
        count += 1
    return count


def unsplit_linears(model: torch.nn.Module) -> None:
    """Undo `split_linears`."""
    for module in model.modules():
        if type(module) is SplitLinear:
            module.__class__ = torch.nn.Linear
            del module.split_parts


def wanted_parts(threads: int | None) -> int:
    """How many blocks to split into: one per torch thread, 1 (no split) on a single thread."""
    return max(1, min(threads or torch.get_num_threads(), 8))
