"""An evaluation run's results as tables: per row, per model (means with confidence intervals), and CSV."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence

from store.eval_runs import Result

Z95 = 1.959964  # two-sided 95% normal quantile


def mean_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """(mean, low, high): a 95% normal-approximation interval of the mean, kept inside [0, 1] (scores' range)."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan, math.nan
    mean = sum(values) / n
    if n == 1:
        return mean, mean, mean
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = Z95 * sd / math.sqrt(n)
    return mean, max(0.0, mean - half), min(1.0, mean + half)


def scorer_names(results: Sequence[Result]) -> list[str]:
    return sorted({name for r in results for name in r.scores})


def summary(results: Sequence[Result], models: Sequence[str]) -> list[dict]:
    """One row per (model, scorer): rows scored, mean, 95% interval; plus each model's failed rows and speed."""
    rows = []
    for model in models:
        mine = [r for r in results if r.model == model]
        ok = [r for r in mine if r.ok]
        speed = [r.stats.get("tokens_per_s", 0.0) for r in ok]
        base = {"model": model, "finished": len(mine), "failed": len(mine) - len(ok),
                "tokens_per_s": round(sum(speed) / len(speed), 2) if speed else None}
        for name in scorer_names(results) or ["(no scorer)"]:
            values = [r.scores[name] for r in ok if name in r.scores]
            mean, low, high = mean_interval(values)
            rows.append({**base, "scorer": name, "n": len(values), "mean": _round(mean), "low": _round(low),
                         "high": _round(high)})
    return rows


def _round(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 4)


def row_table(results: Sequence[Result]) -> tuple[list[str], list[list]]:
    """(headers, rows) of the per-row table: one row per (row, model)."""
    names = scorer_names(results)
    headers = ["row", "model", "prompt", "reference", "output", "status", *names, "tokens", "tokens_per_s"]
    rows = [[r.row, r.model, r.prompt, r.reference or "", r.output, "ok" if r.ok else f"failed: {r.error}",
             *[r.scores.get(n) for n in names], r.stats.get("generated_tokens"), r.stats.get("tokens_per_s")]
            for r in results]
    return headers, rows


def to_csv(results: Sequence[Result]) -> str:
    headers, rows = row_table(results)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(headers)
    writer.writerows(rows)
    return out.getvalue()
