"""Fine-tune tab: LoRA training on a dataset picked in the browser, with a live loss plot, that survives a reload.

The job lives in the app's database and its run in a subprocess (finetune/), so this tab only reads and writes
job state: a reloaded page finds the running job, its curve and its log where they were.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from finetune.data import KINDS, TEMPLATES
from finetune.settings import SCHEDULERS, TrainSettings
from ui import finetune_handlers as h
from ui.common import PageLoad, bind
from ui.errors import guarded
from ui.finetune_handlers import FinetuneDeps

DEFAULTS = TrainSettings()
POLL_S = 2.0


@dataclass
class FinetuneTab:
    """`model_lists(tasks)` gives a page-load handler that fills model lists (one per task: the catalog's models for
    it) with the finished adapters after them, as `base + adapter`."""

    job: gr.Dropdown
    model_lists: Callable[[tuple[str, ...]], Callable[[], list[gr.Dropdown]]]
    on_load: list[PageLoad]


def _data_fields(deps: FinetuneDeps, samples: list[tuple[str, str]]) -> dict[str, Any]:
    f: dict[str, Any] = {}
    with gr.Row(equal_height=True):
        f["base"] = gr.Dropdown(deps.catalog.choices("chat"), value=deps.catalog.default("chat"),
                                allow_custom_value=True, scale=3,
                                label="Base model", info="the embedded SmolLM2, a hub id or a local folder")
        f["precision"] = gr.Dropdown(["float32"], value="float32", label="Precision", scale=1,
                                     info="what this device can train in")
        f["name"] = gr.Textbox(label="Job name", placeholder="(base on dataset)", scale=2)
    with gr.Row(equal_height=True):
        f["source"] = gr.Dropdown(samples, value=None, allow_custom_value=True, scale=3, label="Dataset",
                                  elem_id="finetune-source", info="a sample, a path, hub:<owner/name>, or upload")
        f["from_datasets"] = gr.Button("Use the Datasets tab's dataset", scale=1, size="sm")
        f["upload"] = gr.UploadButton("Upload JSONL / CSV / Parquet", scale=1, size="sm",
                                      file_types=[".jsonl", ".json", ".csv", ".tsv", ".parquet", ".txt"])
    with gr.Row(equal_height=True):
        f["kind"] = gr.Radio(list(KINDS), value="instruction", label="Data shape", scale=2,
                             info="messages: chat JSONL · instruction: question + answer columns · text")
        f["prompt_column"] = gr.Dropdown([], label="Messages / instruction / text column", allow_custom_value=True,
                                         scale=1)
        f["response_column"] = gr.Dropdown([], label="Response column", allow_custom_value=True, scale=1)
        f["template"] = gr.Radio(list(TEMPLATES), value="chat", label="Template", scale=2,
                                 info="chat: the model's chat template · alpaca · plain")
    return f


def _setting_fields() -> dict[str, Any]:
    d, f = DEFAULTS, {}
    with gr.Accordion("Training settings", open=False):
        with gr.Row():
            f["lora_rank"] = gr.Number(d.lora_rank, precision=0, label="LoRA rank", minimum=1)
            f["lora_alpha"] = gr.Number(d.lora_alpha, label="LoRA alpha")
            f["lora_dropout"] = gr.Number(d.lora_dropout, label="LoRA dropout", minimum=0, maximum=0.9)
            f["target_modules"] = gr.Textbox(d.target_modules, label="Target modules",
                                             info="all-linear, or names like q_proj,v_proj")
        with gr.Row():
            f["learning_rate"] = gr.Number(d.learning_rate, label="Learning rate")
            f["scheduler"] = gr.Dropdown(list(SCHEDULERS), value=d.scheduler, label="Scheduler")
            f["epochs"] = gr.Number(d.epochs, label="Epochs")
            f["max_steps"] = gr.Number(d.max_steps, precision=0, label="Max steps", info="> 0 wins over epochs")
        with gr.Row():
            f["batch_size"] = gr.Number(d.batch_size, precision=0, label="Batch size", minimum=1)
            f["grad_accum"] = gr.Number(d.grad_accum, precision=0, label="Gradient accumulation", minimum=1)
            f["cutoff_len"] = gr.Number(d.cutoff_len, precision=0, label="Cutoff length (tokens)", minimum=8)
            f["val_split"] = gr.Number(d.val_split, label="Validation split", minimum=0, maximum=0.5)
            f["seed"] = gr.Number(d.seed, precision=0, label="Seed")
            f["save_steps"] = gr.Number(d.save_steps, precision=0, label="Checkpoint every N steps",
                                        info="0: about ten")
            f["threads"] = gr.Number(d.threads, precision=0, label="CPU threads", info="0: all cores", minimum=0)
    return f


def _job_view() -> dict[str, Any]:
    v: dict[str, Any] = {}
    gr.Markdown("### Jobs")
    with gr.Row(equal_height=True):
        v["job"] = gr.Dropdown([], label="Job", scale=3, elem_id="finetune-job")
        v["stop"] = gr.Button("Stop", variant="stop", scale=1, elem_id="finetune-stop")
    v["progress"] = gr.HTML(elem_id="finetune-progress-box")
    v["plot"] = gr.LinePlot(x="step", y="loss", color="curve", height=380,
                            label="Loss (blue: training, orange: validation)",
                            color_map={"train": "#4c78a8", "validation": "#f58518"},
                            elem_id="finetune-loss", x_title="step", y_title="loss")
    with gr.Accordion("Log", open=False):
        v["log"] = gr.Textbox(lines=10, max_lines=20, show_label=False, elem_id="finetune-log", autoscroll=True)
    with gr.Row(equal_height=True):
        v["checkpoint"] = gr.Dropdown([], label="Checkpoint", scale=2)
        v["resume"] = gr.Button("Resume from it", scale=1)
        v["evaluate"] = gr.Button("Evaluate (validation loss)", scale=1)
        v["export"] = gr.Button("Merge into the base and export", scale=1)
        v["download"] = gr.Button("Download adapter", scale=1)
    v["result"] = gr.Markdown(elem_id="finetune-result")
    v["file"] = gr.File(label="Download", interactive=False, visible=False)
    return v


# -- handlers that turn results into component updates ----------------------------------------------------------
def on_source(source: str, *, deps: FinetuneDeps) -> tuple:
    """Fill the column pickers from the chosen dataset, with a guess at its shape."""
    if not (source or "").strip():
        return gr.skip(), gr.skip(), gr.skip(), gr.skip()
    guess = h.columns_for(source, deps=deps)
    cols = guess["columns"]
    return (guess["kind"], gr.Dropdown(cols, value=guess["prompt_column"] or None),
            gr.Dropdown(cols, value=guess["response_column"] or None), guess["template"])


def on_upload(path: str | None, *, deps: FinetuneDeps) -> str:
    if not path:
        raise gr.Error("No file arrived: upload chat JSONL (a messages column), CSV/JSONL/Parquet with "
                       "instruction and response columns, or a text file.")
    return deps.upload(path)


def from_datasets(state: dict | None) -> str:
    ref = (state or {}).get("ref")
    if not ref:
        raise gr.Error("No dataset is open in the Datasets tab: open one there first, or pick one here.")
    return ref["source"]


def show(job_id: int | None, *, deps: FinetuneDeps) -> tuple:
    """(progress, loss plot, log, checkpoint choices, what was shown) for a job."""
    view = h.job_view(deps.service.job(job_id) if job_id else None, deps.service.store)
    checkpoints = h.checkpoint_choices(deps.service, view["job_id"])
    seen = [view["job_id"], view.get("status"), view.get("step"), len(view.get("log", [])),
            len(view.get("validation_loss", [])), len(checkpoints), view.get("message")]
    return (h.progress_html(view), h.loss_frame(view), "\n".join(view.get("log", [])),
            gr.Dropdown(checkpoints, value=checkpoints[-1][1] if checkpoints else None), seen)


def poll(job_id: int | None, seen: list, *, deps: FinetuneDeps) -> tuple:
    """Like `show`, but sends nothing when the job has not changed (the timer ticks every two seconds)."""
    shown = show(job_id, deps=deps)
    if shown[-1] == seen:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
    return shown


def start(form: dict, *, deps: FinetuneDeps) -> tuple[str, gr.Dropdown]:
    note, job_id = h.start_job(form, deps=deps)
    return note, gr.Dropdown(h.job_choices(deps.service.store), value=job_id)


def stop(job_id: int | None, *, deps: FinetuneDeps) -> str:
    job = deps.service.stop(job_id)
    return f"Stop requested for #{job.id}: " + ("it stopped." if job.status == "stopped" else
                                                 "it saves a checkpoint and stops after the current step.")


def resume(job_id: int | None, step: int | None, *, deps: FinetuneDeps) -> tuple[str, gr.Dropdown]:
    job = deps.service.resume(_need(job_id, "job"), step)
    return job.message.capitalize() + ".", gr.Dropdown(h.job_choices(deps.service.store), value=job.id)


def evaluate(job_id: int | None, step: int | None, *, deps: FinetuneDeps) -> str:
    from finetune import export

    job = deps.service.job(_need(job_id, "job"))
    loss = export.evaluate(job, deps.service.checkpoint(job.id, _need(step, "checkpoint")))
    return f"Validation loss of checkpoint-{step}: **{loss:.4f}**"


def export_merged(job_id: int | None, step: int | None, *, deps: FinetuneDeps) -> str:
    from finetune import export

    job = deps.service.job(_need(job_id, "job"))
    ckpt = deps.service.checkpoint(job.id, _need(step, "checkpoint"))
    dest = export.merge_and_export(job, ckpt, deps.layout.exports(job.id) / f"merged-step{step}", deps.service.store)
    return f"Merged and exported to `{dest}` (safetensors, with a model card); load it as a model by that path."


def download(job_id: int | None, step: int | None, *, deps: FinetuneDeps) -> gr.File:
    from finetune import export

    job = deps.service.job(_need(job_id, "job"))
    path = export.adapter_zip(job, deps.service.checkpoint(job.id, _need(step, "checkpoint")), deps.service.store)
    return gr.File(value=str(path), visible=True)


def on_load(*, deps: FinetuneDeps) -> tuple:
    """After a (re)load: the device's precisions, the jobs, and the running (else newest) job selected."""
    precisions = deps.service.precisions()
    current = deps.service.job()
    return (gr.Dropdown(precisions, value=precisions[0]),
            gr.Dropdown(h.job_choices(deps.service.store), value=current.id if current else None))


def _need(value: int | None, what: str) -> int:
    if value in (None, "", 0):
        raise gr.Error(f"Choose a {what} first.")
    return int(value)


# -- layout, then events ---------------------------------------------------------------------------------------
def build(deps: FinetuneDeps) -> FinetuneTab:
    """Lay out the Fine-tune tab inside the caller's open gr.Tab, then wire its events and API."""
    gr.Markdown("Train a LoRA adapter on a dataset. Jobs run one at a time in a background process that pauses "
                "while someone is generating; a reload or an app restart finds them where they were.")
    f = _data_fields(deps, deps.samples)
    settings = _setting_fields()
    with gr.Row():
        preview_btn = gr.Button("Preview data and estimate", elem_id="finetune-preview")
        start_btn = gr.Button("Start training", variant="primary", elem_id="finetune-start")
    stats = gr.Markdown(elem_id="finetune-stats")
    with gr.Accordion("Formatted examples", open=False):
        examples = gr.Markdown()
    v = _job_view()
    _wire(deps, f, settings, v, stats, examples, preview_btn, start_btn)
    _register_api(deps)
    return FinetuneTab(job=v["job"], model_lists=lambda tasks: guarded(lambda: model_lists(tasks, deps=deps)),
                       on_load=[PageLoad(bind(on_load, deps=deps), [], [f["precision"], v["job"]])])


def model_lists(tasks: tuple[str, ...], *, deps: FinetuneDeps) -> list[gr.Dropdown]:
    """Model lists (one per task) with the finished adapters after the catalog's models for that task."""
    adapters = [(a["label"], a["ref"]) for a in deps.service.adapters()]
    return [gr.Dropdown(choices=[*deps.catalog.choices(task), *adapters]) for task in tasks]


def _wire(deps: FinetuneDeps, f: dict, settings: dict, v: dict, stats, examples, preview_btn, start_btn) -> None:
    private = {"api_visibility": "private"}
    form = {**{k: f[k] for k in ("base", "precision", "name", *h.DATA_NAMES)}, **settings}
    names = {component: name for name, component in form.items()}
    by_name = lambda fn: lambda values: fn({names[c]: value for c, value in values.items()}, deps=deps)
    f["source"].change(bind(on_source, deps=deps), f["source"],
                       [f["kind"], f["prompt_column"], f["response_column"], f["template"]], **private)
    f["upload"].upload(bind(on_upload, deps=deps), f["upload"], f["source"], **private)
    if deps.datasets_state is not None:
        f["from_datasets"].click(guarded(from_datasets), deps.datasets_state, f["source"], **private)
    preview_btn.click(guarded(by_name(h.inspect_data)), set(form.values()), [stats, examples], **private)
    seen = gr.State([])
    view = [v["progress"], v["plot"], v["log"], v["checkpoint"], seen]
    shown = bind(show, deps=deps)
    start_btn.click(guarded(by_name(start)), set(form.values()), [stats, v["job"]], **private)
    v["job"].change(shown, v["job"], view, **private, show_progress="hidden")
    gr.Timer(POLL_S).tick(bind(poll, deps=deps), [v["job"], seen], view, **private,
                          show_progress="hidden")
    v["stop"].click(bind(stop, deps=deps), v["job"], v["result"], **private).then(
        shown, v["job"], view, **private)
    pick = [v["job"], v["checkpoint"]]
    v["resume"].click(bind(resume, deps=deps), pick, [v["result"], v["job"]], **private)
    v["evaluate"].click(bind(evaluate, deps=deps), pick, v["result"], **private)
    v["export"].click(bind(export_merged, deps=deps), pick, v["result"], **private)
    v["download"].click(bind(download, deps=deps), pick, v["file"], **private)


def _register_api(deps: FinetuneDeps) -> None:
    """The stable endpoints; every parameter but `source` (start) has a default."""
    for fn in (h.finetune_start, h.finetune_status, h.finetune_stop, h.finetune_adapters):
        gr.api(bind(fn, deps=deps), api_name=fn.__name__)
