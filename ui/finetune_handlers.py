"""Fine-tune tab handlers and its stable API (finetune_start, finetune_status, finetune_stop, finetune_adapters).

Handlers are plain functions over a `FinetuneDeps`; the form's values arrive as one dict keyed by field name
(`form_values`), so adding a setting never shifts a positional parameter.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import gradio as gr
import pandas as pd

from engines.catalog import Catalog
from errors import UserError
from finetune.data import DataSpec, detect
from finetune.jobs import ACTIVE, Job
from finetune.layout import Layout
from finetune.settings import TrainSettings

SETTING_NAMES = ("lora_rank", "lora_alpha", "lora_dropout", "target_modules", "learning_rate", "scheduler", "epochs",
                 "max_steps", "batch_size", "grad_accum", "cutoff_len", "val_split", "seed", "save_steps",
                 "precision", "threads")
DATA_NAMES = ("source", "kind", "prompt_column", "response_column", "template")
PLOT_COLUMNS = ["step", "loss", "curve"]


class Service(Protocol):  # finetune.service.FinetuneService
    store: Any
    def inspect(self, base: str, spec: DataSpec, settings: TrainSettings) -> Any: ...
    def start(self, base: str, spec: DataSpec, settings: TrainSettings, name: str = "") -> tuple[Job, str]: ...
    def job(self, job_id: int | None = None) -> Job | None: ...
    def stop(self, job_id: int | None = None) -> Job: ...
    def resume(self, job_id: int, step: int | None = None) -> Job: ...
    def checkpoints(self, job_id: int) -> list: ...
    def checkpoint(self, job_id: int, step: int) -> Any: ...
    def adapters(self) -> list[dict[str, Any]]: ...
    def precisions(self) -> list[str]: ...


class Rows(Protocol):  # finetune.service.RowSource
    def __call__(self, source: str) -> tuple[list[str], list[dict]]: ...


@dataclass
class FinetuneDeps:
    """Everything the Fine-tune tab needs."""

    service: Service
    rows: Rows  # columns of a source, for the column pickers
    catalog: Catalog  # base model choices (the chat models), and the lists adapters join
    upload: Callable[[str], str]  # (path) -> source string: the Datasets browser converts the file
    layout: Layout  # where exports go
    samples: list[tuple[str, str]]  # (title, source) of the Datasets tab's samples
    datasets_state: gr.State | None = None  # the Datasets tab's open dataset, when there is one


def parse_form(form: dict[str, Any]) -> tuple[str, DataSpec, TrainSettings, str]:
    """(base, data spec, settings, job name) from the form's values keyed by field name."""
    base = str(form.get("base") or "").strip()
    if not base:
        raise UserError("choose a base model: the embedded SmolLM2, a hub id or a local folder")
    spec = DataSpec(**{k: str(form.get(k) or "") for k in DATA_NAMES})
    settings = TrainSettings.from_dict({k: form[k] for k in SETTING_NAMES if form.get(k) not in (None, "")})
    return base, spec, settings, str(form.get("name") or "")


def columns_for(source: str, *, deps: FinetuneDeps) -> dict[str, Any]:
    """The source's columns and a guess at kind, columns and template."""
    columns, _ = deps.rows(source)
    guess = detect(columns)
    return {"columns": columns, "kind": guess.kind, "prompt_column": guess.prompt_column,
            "response_column": guess.response_column, "template": guess.template}


def inspect_data(form: dict[str, Any], *, deps: FinetuneDeps) -> tuple[str, str]:
    """(statistics and estimate, preview of formatted examples) as Markdown."""
    from finetune.data import preview

    base, spec, settings, _ = parse_form(form)
    ins = deps.service.inspect(base, spec, settings)
    return ins.summary(), preview(ins.examples)


def start_job(form: dict[str, Any], *, deps: FinetuneDeps) -> tuple[str, int]:
    """Queue a run from the form; (message, job id)."""
    base, spec, settings, name = parse_form(form)
    job, note = deps.service.start(base, spec, settings, name)
    return note, job.id


def job_view(job: Job | None, store: Any) -> dict[str, Any]:
    """What the tab and the API show about a job: status, progress, ETA, losses, log, checkpoints."""
    if job is None:
        return {"job_id": 0, "status": "none", "message": "No fine-tuning job yet."}
    losses = store.losses(job.id)
    return {"job_id": job.id, "name": job.name, "base": job.base, "status": job.status, "message": job.message,
            "step": job.step, "max_steps": job.max_steps, "eta_s": job.eta_s,
            "tokens_per_s": round(job.tokens_per_s, 1) if job.tokens_per_s else None,
            "elapsed_s": round((job.finished or time.time()) - job.started, 1) if job.started else 0.0,
            "train_loss": [[s, v] for s, k, v in losses if k == "train"],
            "validation_loss": [[s, v] for s, k, v in losses if k == "validation"],
            "data": {k: v for k, v in job.data.items() if k not in ("base_location", "examples_file", "local_only")},
            "settings": job.settings, "log": [line for _, line in store.logs(job.id, 50)]}


def progress_html(view: dict[str, Any]) -> str:
    if not view["job_id"]:
        return f"<div id='finetune-progress'>{view['message']}</div>"
    step, total = view["step"], view["max_steps"] or 0
    pct = 100 * step / total if total else 0
    eta = f" · about {_minutes(view['eta_s'])} left" if view["eta_s"] and view["status"] == "running" else ""
    speed = f" · {view['tokens_per_s']:,.0f} tokens/s" if view["tokens_per_s"] else ""
    message = f"<br>{_escape(view['message'])}" if view["message"] else ""
    return (f"<div id='finetune-progress' data-status='{view['status']}'><b>#{view['job_id']} {_escape(view['name'])}"
            f"</b> — {view['status']} · step {step}/{total or '?'} ({pct:.0f}%){eta}{speed}"
            f"<progress max='100' value='{pct:.1f}' style='width:100%'></progress>{message}</div>")


def loss_frame(view: dict[str, Any]) -> pd.DataFrame | None:
    """The loss curves as a frame for the plot; None before the first point.

    gradio 6.31's LinePlot keeps the colour scale of the first frame it draws: a curve missing from it is drawn
    later without a colour (invisible). So no empty frame is sent, and until the first validation loss arrives a
    NaN stands in for it (not drawn, but it puts "validation" in the scale).
    """
    rows = [[s, v, "train"] for s, v in view.get("train_loss", [])]
    validation = [[s, v, "validation"] for s, v in view.get("validation_loss", [])]
    if rows and not validation and view.get("data", {}).get("validation"):
        validation = [[rows[0][0], float("nan"), "validation"]]
    return pd.DataFrame(rows + validation, columns=PLOT_COLUMNS) if rows else None


def job_choices(store: Any) -> list[tuple[str, int]]:
    return [(f"#{j.id} {j.name}", j.id) for j in store.list()]


def checkpoint_choices(service: Service, job_id: int | None) -> list[tuple[str, int]]:
    return [(f"checkpoint-{step}", step) for step, _ in service.checkpoints(job_id)] if job_id else []


def is_active(view: dict[str, Any]) -> bool:
    return view.get("status") in ACTIVE


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def _escape(text: str) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# -- the stable API: gradio_client calls these with only `source` (start) or nothing at all ----------------------
def finetune_start(source: str, base: str = "", kind: str = "", prompt_column: str = "", response_column: str = "",
                   template: str = "", settings: dict | None = None, name: str = "", *,
                   deps: FinetuneDeps) -> dict:
    """Queue a LoRA run on a dataset source (sample:, a path, hub:, upload:); kind and columns are guessed when
    left empty; `settings` holds any of the training settings by name. Returns the job's status."""
    guess = columns_for(source, deps=deps) if not kind else {}
    form = {"base": base or deps.catalog.default("chat"), "source": source, "kind": kind or guess["kind"],
            "prompt_column": prompt_column or guess.get("prompt_column", ""),
            "response_column": response_column or guess.get("response_column", ""),
            "template": template or guess.get("template") or "chat", "name": name, **(settings or {})}
    if "precision" not in form:
        form["precision"] = deps.service.precisions()[0]
    note, job_id = start_job(form, deps=deps)
    return {**job_view(deps.service.job(job_id), deps.service.store), "note": note}


def finetune_status(job_id: int = 0, *, deps: FinetuneDeps) -> dict:
    """A job's status, progress, ETA, loss curves and recent log (0: the running job, else the newest)."""
    return job_view(deps.service.job(int(job_id or 0) or None), deps.service.store)


def finetune_stop(job_id: int = 0, *, deps: FinetuneDeps) -> dict:
    """Stop a queued job at once, or a running one at its next step after saving a checkpoint (0: the running one)."""
    job = deps.service.stop(int(job_id or 0) or None)
    return job_view(job, deps.service.store)


def finetune_adapters(*, deps: FinetuneDeps) -> list[dict]:
    """Finished adapters: `ref` is what the Chat and Text generation model boxes (and /chat's `model`) accept."""
    return deps.service.adapters()
