"""Compare tab, evaluation runs: a dataset's prompts through several models in the background, scored.

The run lives on the server (compare.evaluation); the page keeps only the run id, so a reload (or a restart) picks
the latest run up again, and a timer polls its progress while it runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr
import pandas as pd

from compare import service
from compare.evaluation import MODES, EvalSpec
from compare.scorers import DEFAULT_RUBRIC, SCORERS
from compare.service import PromptSource
from databrowser.errors import DatasetError
from ui.chat_tab import asker_of
from ui.common import bind
from ui.compare_common import CompareDeps, column_params, model_dropdown

SUMMARY_COLUMNS = ["model", "scorer", "n", "mean", "low", "high", "finished", "failed", "tokens_per_s"]
SHOWN_ROWS = 500


def eval_start_api(models: list[str], source: str = "", prompt_column: str = "prompt", reference_column: str = "",
                   data: str = "", template: str = "{prompt}", mode: str = "chat", scorers: list[str] | None = None,
                   regex: str = "", judge: str = "", limit: int = 100, temperature: float = 0.0,
                   max_new_tokens: int = 64, seed: int = 0, request: gr.Request = None, *,
                   deps: CompareDeps) -> dict:
    """Start an evaluation in the background; `data` is inline JSONL or CSV when there is no `source` dataset."""
    params = column_params(deps, {"temperature": temperature, "max_new_tokens": max_new_tokens, "seed": seed})
    spec = EvalSpec(models=tuple(models or ()), params=params.as_dict(), mode=mode, template=template,
                    scorers=tuple(scorers if scorers is not None else ()), pattern=regex, judge=judge,
                    rubric=DEFAULT_RUBRIC if judge else "")
    src = PromptSource({"source": source}, prompt_column, reference_column, int(limit), data)
    return service.start(deps.evals, deps.datasets, asker_of(request, "").owner, spec, src)


def eval_status_api(run: str = "", request: gr.Request = None, *, deps: CompareDeps) -> dict:
    """Progress of your run (your latest when `run` is empty): done, failed, total, progress, eta_s, status."""
    return service.status(deps.evals, asker_of(request, "").owner, run)


def eval_results_api(run: str = "", request: gr.Request = None, *, deps: CompareDeps) -> dict:
    """Per-model means with 95% intervals ("summary") and per-row results ("rows")."""
    return service.results(deps.evals, asker_of(request, "").owner, run)


def eval_stop_api(run: str = "", request: gr.Request = None, *, deps: CompareDeps) -> dict:
    """Stop your run (your latest when `run` is empty); finished rows are kept."""
    return service.stop(deps.evals, asker_of(request, "").owner, run)


@dataclass
class EvalUI:
    source: gr.Textbox
    use_open: gr.Button
    upload: gr.File
    ref: gr.State  # the Datasets tab's SourceRef and session when "use open" was pressed
    prompt_column: gr.Textbox
    reference_column: gr.Textbox
    limit: gr.Number
    models: gr.Dropdown
    mode: gr.Radio
    template: gr.Textbox
    system: gr.Textbox
    scorers: gr.CheckboxGroup
    regex: gr.Textbox
    judge: gr.Dropdown
    rubric: gr.Textbox
    temperature: gr.Slider
    max_tokens: gr.Slider
    seed: gr.Number
    start: gr.Button
    stop: gr.Button
    resume: gr.Button
    run: gr.State
    progress: gr.HTML
    timer: gr.Timer
    summary: gr.Dataframe
    plot: gr.BarPlot
    rows: gr.Dataframe
    export: gr.Button
    file: gr.File
    owner: gr.State


def start_ui(values: dict, request: gr.Request = None, *, deps: CompareDeps, ui: EvalUI) -> tuple:
    """Start a run from the form; the timer starts polling it."""
    owner = asker_of(request, values[ui.owner]).owner
    params = column_params(deps, {"temperature": values[ui.temperature], "max_new_tokens": values[ui.max_tokens],
                                  "seed": values[ui.seed]})
    spec = EvalSpec(models=tuple(values[ui.models] or ()), params=params.as_dict(), mode=values[ui.mode],
                    template=values[ui.template], system=values[ui.system] or "",
                    scorers=tuple(values[ui.scorers] or ()), pattern=values[ui.regex] or "",
                    judge=values[ui.judge] or "", rubric=values[ui.rubric] if values[ui.judge] else "")
    picked = values[ui.ref] or {}
    source = (values[ui.source] or "").strip()
    ref = picked.get("ref") if picked.get("ref", {}).get("source") == source else {"source": source}
    src = PromptSource(ref, (values[ui.prompt_column] or "").strip(), (values[ui.reference_column] or "").strip(),
                       int(values[ui.limit] or 0), session=picked.get("session", "") or f"eval:{owner}")
    state = service.start(deps.evals, deps.datasets, owner, spec, src)
    return state["run"], progress_html(state), gr.Timer(active=True)


def progress_html(state: dict[str, Any]) -> str:
    if state.get("status") in (None, "none"):
        return "<p>No evaluation run yet.</p>"
    eta = f" · about {state['eta_s']:.0f} s left" if state.get("eta_s") is not None else ""
    error = f"<br>⚠️ {state['error']}" if state.get("error") else ""
    return (f"<div id='eval-progress'><progress value='{state['done']}' max='{max(1, state['total'])}' "
            f"style='width:100%'></progress><br><b>{state['status']}</b> · run {state['run']} · "
            f"{state['done']} / {state['total']} results · {state['failed']} failed{eta}<br>"
            f"<small>{', '.join(state['models'])} on {state['label']}</small>{error}</div>")


def poll_ui(run: str, owner: str, request: gr.Request = None, *, deps: CompareDeps) -> tuple:
    """Status and results of the page's run (the owner's latest after a reload); the timer stops when it ends."""
    who = asker_of(request, owner).owner
    state = service.status(deps.evals, who, run or "")
    if not state["run"]:
        return "", progress_html(state), gr.skip(), gr.skip(), gr.skip(), gr.Timer(active=False)
    found = service.results(deps.evals, who, state["run"], max_rows=SHOWN_ROWS)
    summary = pd.DataFrame(found["summary"], columns=SUMMARY_COLUMNS)
    short = summary["model"].astype(str).str.split("/").str[-1].str[:24]  # the plot's labels stay readable
    plot = summary.assign(label=summary["scorer"].astype(str) + " · " + short)
    return (state["run"], progress_html(state), summary, plot, pd.DataFrame(found["rows"]),
            gr.Timer(active=state["status"] == "running"))


def stop_ui(run: str, owner: str, request: gr.Request = None, *, deps: CompareDeps) -> str:
    return progress_html(service.stop(deps.evals, asker_of(request, owner).owner, run))


def resume_ui(run: str, owner: str, request: gr.Request = None, *, deps: CompareDeps) -> tuple:
    state = service.resume(deps.evals, asker_of(request, owner).owner, run)
    return progress_html(state), gr.Timer(active=True)


def export_ui(run: str, owner: str, request: gr.Request = None, *, deps: CompareDeps) -> gr.File:
    return gr.File(value=service.export(deps.evals, asker_of(request, owner).owner, run), visible=True)


def use_open(datasets_state: dict) -> tuple[str, dict]:
    """The dataset open in the Datasets tab becomes the evaluation's source."""
    ref = (datasets_state or {}).get("ref")
    if not ref:
        raise gr.Error("No dataset is open in the Datasets tab: open one there first (or type a source here).")
    return ref["source"], {"ref": ref, "session": datasets_state.get("session", "")}


def upload_prompts(path: str | None, owner: str, request: gr.Request = None, *, deps: CompareDeps) -> tuple[str, dict]:
    """An uploaded JSONL / CSV file of prompts (optionally with reference answers) becomes the source."""
    if not path:
        raise gr.Error("No file arrived: upload a JSONL or CSV file with a prompt column.")
    session = f"eval:{asker_of(request, owner).owner}"
    try:
        ref, ds = deps.datasets.open_upload(session, path, path.rsplit("/", 1)[-1])
    except DatasetError as exc:
        raise gr.Error(str(exc)) from None
    gr.Info(f"{ds.name}: {ds.num_rows} rows; columns {', '.join(c.name for c in ds.columns)}")
    return ref.source, {"ref": ref.to_dict(), "session": session}


def layout(deps: CompareDeps, owner: gr.State) -> EvalUI:
    with gr.Row(equal_height=True):
        source = gr.Textbox(label="Dataset", scale=3, elem_id="eval-source",
                            info="sample:<name>, a path, hub:<id>, or the Datasets tab's / an uploaded one")
        use_open_btn = gr.Button("Use the Datasets tab's dataset", scale=1)
        upload = gr.File(label="or upload JSONL / CSV prompts", file_types=[".jsonl", ".json", ".csv"],
                         type="filepath", scale=2, height=90, elem_id="eval-upload")
    with gr.Row():
        prompt_column = gr.Textbox("prompt", label="Prompt column", elem_id="eval-prompt-column")
        reference_column = gr.Textbox("", label="Reference column (optional)", elem_id="eval-reference-column")
        limit = gr.Number(50, precision=0, minimum=1, label="Row limit")
    with gr.Row():
        models = model_dropdown(deps.choices, [deps.default_model], f"Models (up to {deps.evals.max_models})",
                                multiselect=True, elem_id="eval-models")
        mode = gr.Radio(list(MODES), value="chat", label="Mode")
    with gr.Row():
        template = gr.Textbox("{prompt}", label="Prompt template", info="{prompt} is replaced by each row's text")
        system = gr.Textbox("", label="System prompt (chat mode)")
    with gr.Row():
        scorers = gr.CheckboxGroup(list(SCORERS), value=["contains", "rouge_l"], label="Scorers")
        regex = gr.Textbox("", label="Regex (for the regex scorer)")
    with gr.Accordion("Judge model and sampling", open=False):
        judge = model_dropdown(["", *deps.choices], "", "Judge model (optional)")
        rubric = gr.Textbox(DEFAULT_RUBRIC, label="Rubric", lines=4)
        with gr.Row():
            temperature = gr.Slider(0, 2, value=0.0, step=0.05, label="Temperature")
            max_tokens = gr.Slider(1, deps.max_new_tokens, value=min(64, deps.max_new_tokens), step=1,
                                   label="Max new tokens")
            seed = gr.Number(0, precision=0, label="Seed")
    with gr.Row():
        start = gr.Button("Start evaluation", variant="primary", elem_id="eval-start")
        stop = gr.Button("Stop", variant="stop")
        resume = gr.Button("Resume")
    progress = gr.HTML(progress_html({}))
    summary = gr.Dataframe(pd.DataFrame(columns=SUMMARY_COLUMNS), label="Per model (mean, 95% interval)",
                           interactive=False, elem_id="eval-summary")
    plot = gr.BarPlot(x="label", y="mean", color="model", height=280, label="Mean score", x_label_angle=-30)
    rows = gr.Dataframe(label=f"Per row (first {SHOWN_ROWS})", interactive=False, wrap=True, max_height=420)
    with gr.Row():
        export = gr.Button("Export CSV", size="sm")
        file = gr.File(label="Results CSV", interactive=False, visible=False)
    return EvalUI(source, use_open_btn, upload, gr.State({}), prompt_column, reference_column, limit, models, mode,
                  template, system, scorers, regex, judge, rubric, temperature, max_tokens, seed, start, stop, resume,
                  gr.State(""), progress, gr.Timer(2.0, active=False), summary, plot, rows, export, file, owner)


def wire(ui: EvalUI, deps: CompareDeps, datasets_state: gr.State | None) -> None:
    private = {"api_visibility": "private"}
    if datasets_state is not None:
        ui.use_open.click(use_open, datasets_state, [ui.source, ui.ref], **private)
    ui.upload.upload(bind(upload_prompts, deps=deps), [ui.upload, ui.owner], [ui.source, ui.ref],
                     **private)
    form = {ui.source, ui.ref, ui.prompt_column, ui.reference_column, ui.limit, ui.models, ui.mode, ui.template,
            ui.system, ui.scorers, ui.regex, ui.judge, ui.rubric, ui.temperature, ui.max_tokens, ui.seed, ui.owner}
    ui.start.click(bind(start_ui, deps=deps, ui=ui), form, [ui.run, ui.progress, ui.timer], **private)
    polled = [ui.run, ui.progress, ui.summary, ui.plot, ui.rows, ui.timer]
    poll = bind(poll_ui, deps=deps)
    ui.timer.tick(poll, [ui.run, ui.owner], polled, **private)
    ui.owner.change(poll, [ui.run, ui.owner], polled, **private)  # set at page load: a reload finds the latest run
    ui.stop.click(bind(stop_ui, deps=deps), [ui.run, ui.owner], ui.progress, **private).then(
        poll, [ui.run, ui.owner], polled, **private)
    ui.resume.click(bind(resume_ui, deps=deps), [ui.run, ui.owner], [ui.progress, ui.timer], **private)
    ui.export.click(bind(export_ui, deps=deps), [ui.run, ui.owner], ui.file, **private)
