"""Decoding-sized linear layers: the weight times the rows as columns, split across CPU cores.

Decoding multiplies a handful of rows (one per sequence in the batch) by every weight matrix. For that shape torch's
CPU `linear` (rows times the transposed weight) runs on one core and, for 2-8 rows, leaves the matrix-vector path for
a slower matrix-product path. Computing the transposed product instead (the weight, as stored, times the rows as
columns), with the weight's output features split into one block per thread and the blocks multiplied as one `bmm`,
uses every core and a better kernel. On this project's 2-core machine the embedded SmolLM2's linear layers took, for
1 / 2 / 4 / 8 rows: 44 / 72 / 61 / 55 ms with torch's `linear`, 24 / 37 / 35 / 41 ms split as rows times the
transposed weight, 13-18 / 16-18 / 25 / 41 ms as the weight times the columns; its whole decoding step went from
57 / 99 / 82 / 79 ms to 28 / 45 / 51 / 71 ms at batch 1 / 2 / 4 / 8 (`scripts/bench_batch.py` prints it as
`forward_step_ms_by_batch`). At 12 rows torch's path was faster again, so inputs of more than MAX_ROWS rows (prompts)
keep it. The weights are views, never copied; greedy tokens were identical to torch's on the real model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MAX_ROWS = 8  # a model's batch (--max-batch 8); prompts and larger batches keep torch's path


class SplitLinear(torch.nn.Linear):
    """An `nn.Linear` whose small inputs are multiplied as columns by its weight's blocks in one `bmm`.

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
        # weight (out, in) as `parts` blocks of output features, times the rows as columns: (parts, out/parts, rows)
        blocks = weight.view(parts, out_features // parts, in_features)
        columns = x.reshape(rows, in_features).t()
        out = torch.bmm(blocks, columns.expand(parts, in_features, rows))
        out = out.permute(2, 0, 1).reshape(*x.shape[:-1], out_features)
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
