"""Linear layers for CPU decoding: one row split across the cores, several rows on oneDNN's pre-packed weights.

Decoding multiplies a handful of rows (one per sequence in the batch) by every weight matrix, and on the CPU torch's
`linear` is slow at that shape: it runs one row on one core and, for 2-8 rows, leaves the matrix-vector path for a
matrix-product path that repacks the whole weight at every call. Two replacements, measured on this project's 2-core
machine over the embedded SmolLM2's 210 block layers (`/tmp` probes; whole decoding steps are in
`scripts/bench_batch.py`'s `forward_step_ms_by_batch`):

- one row: the weight, as stored, times the row as a column, the weight's output features split in one block per
  thread, all blocks in one `bmm` (views, nothing copied): 16.5 ms vs torch's 35-60 ms;
- two rows or more (a batch decoding together, and prompts): oneDNN's inner product on a copy of the weight reordered
  once, at load, into oneDNN's blocked layout (`torch.ops.mkldnn._reorder_linear_weight`, what torch's own compiler
  uses for frozen CPU linears): 4 rows 19.5 ms vs 24.7 ms split and 47 ms with torch's `linear`, 8 rows 25 vs 45-85
  ms, a 45-token prompt 67 vs 94 ms. One row on the packed copy took 23 ms, hence both. The copy is laid out for 4
  rows; 2 or 3 rows are padded to 4 (a batch-2 decoding step 43 -> 40 ms; padding 5-7 rows to 8 was slower).

The packed copy doubles the memory of the layers it covers, so it is made only when that fits the budget the loader
gives (`pack_linears`); without it, rows up to MAX_ROWS are split and larger inputs keep torch's path. Results equal
torch's up to float rounding; greedy tokens were identical to torch's on the real model.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

MAX_ROWS = 8  # without a packed copy, inputs of more rows (prompts) keep torch's path, faster there
PACK_ROWS = 4  # the batch size oneDNN lays the copy out for; smaller inputs are padded up to it


class SplitLinear(torch.nn.Linear):
    """An `nn.Linear` with faster CPU paths for one row (a split `bmm`) and, when packed, for several.

    Same weights; the results equal torch's up to float rounding.
    """

    split_parts: int = 1
    packed: torch.Tensor | None = None  # oneDNN's reordered copy of the weight, for inputs of 2+ rows

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight
        out_features, in_features = weight.shape
        rows = x.numel() // in_features if in_features else 0
        if rows == 0 or x.dtype != weight.dtype:
            return F.linear(x, weight, self.bias)
        if rows > 1 and self.packed is not None:
            flat = x.reshape(rows, in_features)
            if rows < PACK_ROWS:  # zero rows up to the size the copy was packed for: 2 rows alone were slower
                flat = torch.cat([flat, flat.new_zeros(PACK_ROWS - rows, in_features)])
            out = torch.ops.mkldnn._linear_pointwise(flat, self.packed, self.bias, "none", [], "")
            return out[:rows].view(*x.shape[:-1], out_features)
        parts = self.split_parts
        if rows > MAX_ROWS or parts < 2:
            return F.linear(x, weight, self.bias)
        # weight (out, in) as `parts` blocks of output features, times the rows as columns: (parts, out/parts, rows)
        blocks = weight.view(parts, out_features // parts, in_features)
        columns = x.reshape(rows, in_features).t()
        out = torch.bmm(blocks, columns.expand(parts, in_features, rows))
        out = out.permute(2, 0, 1).reshape(*x.shape[:-1], out_features)
        return out if self.bias is None else out + self.bias


def split_linears(model: torch.nn.Module, parts: int) -> int:
    """Give the model's float32 CPU linear layers the faster decoding paths; returns how many.

    `parts` blocks (one per thread) for one row; 1 keeps torch's path for one row, and the layers are then only
    worth converting for `pack_linears`.
    """
    count = 0
    for module in model.modules():
        if type(module) is not torch.nn.Linear or "forward" in vars(module):  # subclasses and hooked modules stay
            continue
        weight = module.weight
        if weight.device.type != "cpu" or weight.dtype != torch.float32 or not weight.is_contiguous():
            continue
        module.__class__ = SplitLinear
        module.split_parts = parts if parts > 1 and module.out_features % parts == 0 else 1
        count += 1
    return count


def pack_linears(model: torch.nn.Module, budget_bytes: int) -> int:
    """Give split layers a oneDNN-packed copy of their weight, while the copies fit `budget_bytes`; returns the bytes.

    All or nothing: a model half packed would run its batches at two speeds for no gain in memory that matters.
    """
    layers = [m for m in model.modules() if type(m) is SplitLinear and m.packed is None]
    needed = sum(m.weight.numel() * m.weight.element_size() for m in layers)
    if not layers or needed > budget_bytes or not torch.backends.mkldnn.is_available():
        if layers and needed > budget_bytes:
            logger.info("not packing linear weights: %d MB needed, %d MB allowed", needed >> 20, budget_bytes >> 20)
        return 0
    try:
        with torch.no_grad():
            for module in layers:
                module.packed = torch.ops.mkldnn._reorder_linear_weight(module.weight.detach(), PACK_ROWS)
    except (RuntimeError, AttributeError) as exc:  # a torch without oneDNN's linear ops: keep the split path
        logger.warning("cannot pack linear weights with oneDNN (%s); batches use the split path", exc)
        for module in layers:
            module.packed = None
        return 0
    return needed


def unsplit_linears(model: torch.nn.Module) -> None:
    """Undo `split_linears` and `pack_linears`."""
    for module in model.modules():
        if type(module) is SplitLinear:
            module.__class__ = torch.nn.Linear
            vars(module).pop("split_parts", None)
            vars(module).pop("packed", None)


def wanted_parts(threads: int | None) -> int:
    """How many blocks to split into: one per torch thread, 1 (no split) on a single thread."""
    return max(1, min(threads or torch.get_num_threads(), 8))
