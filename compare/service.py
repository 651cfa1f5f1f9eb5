"""Evaluation runs as the Compare tab and the API ask for them: prompts from a dataset, status, results, export.

Everything here takes an owner and checks it, so one person's runs are never listed, read or stopped by another.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from compare.evaluation import EvalRunner, EvalSpec
from compare.prompts import PromptSourceError, read_items
from compare.results import row_table, summary, to_csv
from databrowser.errors import DatasetError
from databrowser.sources import SourceRef


@dataclass(frozen=True)
class PromptSource:
    """Where an evaluation's prompts come from: an open dataset (`ref`) or inline JSONL / CSV text (`data`)."""

    ref: dict  # SourceRef fields ('' source: none)
    prompt_column: str = "prompt"
    reference_column: str = ""
    limit: int = 100
    data: str = ""
    session: str = ""  # the dataset browser session that has it open


def load_items(opener: Any, src: PromptSource) -> tuple[list[tuple[str, str | None]], str]:
    """(prompt, reference) pairs and a label naming the dataset and columns; PromptSourceError when impossible."""
    session = src.session or "evaluation"
    try:
        if src.data.strip():
            text = src.data.strip()
            folder = Path(tempfile.mkdtemp(prefix="eval-prompts-"))
            path = folder / ("prompts.jsonl" if text.startswith("{") else "prompts.csv")
            path.write_text(text + "\n", encoding="utf-8")
            ref, ds = opener.open_upload(session, path, path.name)
        elif (src.ref or {}).get("source"):
            ref = SourceRef(**{k: v for k, v in src.ref.items() if k in ("source", "config", "split", "stream")})
            ds = opener.open(session, ref)
        else:
            raise PromptSourceError("no prompts given: name a dataset (sample:…, a path, hub:…), use the one open in "
                                    "the Datasets tab, or upload a JSONL / CSV file of prompts")
        items, skipped = read_items(ds, src.prompt_column, src.reference_column, src.limit)
    except DatasetError as exc:
        raise PromptSourceError(str(exc)) from None
    label = f"{ds.name} · {src.prompt_column}" + (f" → {src.reference_column}" if src.reference_column else "")
    return items, label + (f" · {skipped} empty prompts skipped" if skipped else "")


def start(runner: EvalRunner, opener: Any, owner: str, spec: EvalSpec, src: PromptSource) -> dict[str, Any]:
    items, label = load_items(opener, src)
    run_id = runner.start(owner, replace(spec, label=label), items)
    return status(runner, owner, run_id)


def status(runner: EvalRunner, owner: str, run_id: str = "") -> dict[str, Any]:
    """Progress of the owner's run (their latest when `run_id` is ''), with an ETA while it runs here."""
    if not run_id:
        runs = runner.store.runs(owner, limit=1)
        if not runs:
            return {"run": "", "status": "none", "done": 0, "failed": 0, "total": 0, "progress": 0.0, "eta_s": None}
        run_id = runs[0].id
    run = runner.store.get(run_id, owner)
    done, failed = runner.store.counts(run_id)
    eta = None
    pace = runner.pace(run_id) if run.status == "running" else None
    if pace is not None and pace[1] > 0:
        eta = round(pace[0] / pace[1] * (run.total - done), 1)
    return {"run": run.id, "status": run.status, "done": done, "failed": failed, "total": run.total,
            "progress": round(done / run.total, 4) if run.total else 1.0, "eta_s": eta, "error": run.error,
            "models": run.spec["models"], "label": run.spec.get("label", ""), "created": run.created}


def results(runner: EvalRunner, owner: str, run_id: str = "", max_rows: int = 10_000) -> dict[str, Any]:
    """Per-model means with 95% intervals, and per-row results (the first `max_rows`); empty before any run."""
    run_id = status(runner, owner, run_id)["run"]
    if not run_id:
        return {"run": "", "status": "none", "summary": [], "rows": []}
    run = runner.store.get(run_id, owner)
    found = runner.store.results(run.id)
    headers, rows = row_table(found[:max_rows])
    return {"run": run.id, "status": run.status, "summary": summary(found, run.spec["models"]),
            "rows": [dict(zip(headers, r, strict=True)) for r in rows]}


def export(runner: EvalRunner, owner: str, run_id: str) -> str:
    """The run's per-row results as a CSV file; returns its path."""
    run = runner.store.get(run_id, owner)
    path = Path(tempfile.mkdtemp(prefix="eval-export-")) / f"evaluation-{run.id}.csv"
    path.write_text(to_csv(runner.store.results(run.id)), encoding="utf-8")
    return str(path)


def stop(runner: EvalRunner, owner: str, run_id: str = "") -> dict[str, Any]:
    """Stop the owner's run (their latest when `run_id` is ''); stopping when nothing runs is not an error."""
    state = status(runner, owner, run_id)
    if state["status"] != "running":
        return state
    run_id = state["run"]
    runner.stop(run_id)
    runner.wait(run_id, timeout=10)
    return status(runner, owner, run_id)


def resume(runner: EvalRunner, owner: str, run_id: str) -> dict[str, Any]:
    run = runner.store.get(run_id, owner)
    if run.status != "done":
        runner.resume(run.id)
    return status(runner, owner, run.id)
