"""Hugging Face models playground: CLI/env -> AppConfig -> services -> Blocks -> queue -> launch."""

from __future__ import annotations

import logging
import threading
import time

import gradio as gr

from config import REPO_DIR, AppConfig
from services import Services, build_services
from serving.openai_api import ApiDeps, build_router
from ui import (
    chat_tab,
    compare_tab,
    datasets_tab,
    finetune_tab,
    history_tab,
    image_tab,
    index_tab,
    models_tab,
    text_tab,
)
from ui.chat_tab import ChatDeps
from ui.common import PageLoad, text_slots
from ui.compare_common import CompareDeps
from ui.datasets_tab import DatasetsDeps
from ui.finetune_handlers import FinetuneDeps
from ui.history_tab import HistoryDeps
from ui.image_tab import ImageDeps
from ui.index_tab import IndexDeps
from ui.models_tab import ModelsDeps
from ui.rerun import rerun_router
from ui.text_tab import TextDeps

logger = logging.getLogger(__name__)
TITLE = "Hugging Face models playground"


def build_app(services: Services) -> gr.Blocks:
    """Compose the tabs: each gets one typed deps object and returns the components other tabs may use."""
    config = services.config
    with gr.Blocks(title=TITLE) as demo:
        gr.Markdown(f"## {TITLE}")
        # whose history: an id kept in the browser across reloads, handed out by _adopt_browser_id at page load
        browser_id = history_tab.browser_id_state(config, ensure_on_load=False)
        owner = gr.State("")  # the same id as server-side state, so API endpoints don't ask for it
        demo.load(_adopt_browser_id, browser_id, [browser_id, owner], api_visibility="private", queue=False)
        with gr.Tabs() as tabs:
            with gr.Tab("Chat", id="chat"):
                chat = chat_tab.build(_chat_deps(services, owner))
            with gr.Tab("Text generation", id="text"):
                text = text_tab.build(_text_deps(services, owner))
            with gr.Tab("Text to image", id="image"):
                image_tab.build(ImageDeps(engine=services.image, registry=services.registry, catalog=services.catalog,
                                          history=services.history, owner=owner))
            with gr.Tab("Datasets", id="datasets"):
                send_to = {"Chat": chat.message, "Text generation": text.prompt}
                datasets = datasets_tab.build(DatasetsDeps(services.datasets, send_to, offline=config.offline,
                                                           max_upload_mb=config.max_upload_mb))
            if services.compare is not None:
                with gr.Tab("Compare", id="compare"):
                    compare = compare_tab.build(_compare_deps(services, owner, datasets.state))
            with gr.Tab("History", id="history") as history_page:
                history = history_tab.build(HistoryDeps(services.history, browser_id))
            with gr.Tab("Index", id="index"):
                index = index_tab.build(IndexDeps(services.index, services.datasets, config.max_upload_mb << 20, owner))
            finetune_hooks = []
            if services.finetune is not None:
                with gr.Tab("Fine-tune", id="finetune"):
                    finetune = finetune_tab.build(_finetune_deps(services, datasets.state))
                # finished adapters join the Chat, Text generation and Compare model lists as `base + adapter`
                lists = [chat.model, text.model, *(compare.side.models if services.compare is not None else [])]
                tasks = ("chat", "text-generation", *["chat"] * (len(lists) - 2))
                finetune_hooks = [*finetune.on_load, PageLoad(finetune.model_lists(tasks), [], lists)]
            with gr.Tab("Models", id="models"):
                models = models_tab.build(_models_deps(services))
        for hook in (*history.on_load, *index.on_load, *models.on_load, *finetune_hooks):
            hook.wire(demo)
        refresh = history.refresh
        history_page.select(refresh.fn, refresh.inputs, refresh.outputs, api_visibility="private")
        route, targets = rerun_router(tabs, chat, text)
        history.rerun_event.then(route, history.rerun_inputs, targets, api_visibility="private")
    return demo


def _chat_deps(services: Services, owner: gr.State) -> ChatDeps:
    config = services.config
    return ChatDeps(engine=services.text, registry=services.registry, max_new_tokens=config.max_new_tokens,
                    catalog=services.catalog, history=services.history, index=services.index, owner=owner,
                    slots=text_slots(config))


def _text_deps(services: Services, owner: gr.State) -> TextDeps:
    config = services.config
    return TextDeps(engine=services.text, registry=services.registry, max_new_tokens=config.max_new_tokens,
                    catalog=services.catalog, history=services.history, owner=owner, slots=text_slots(config))


def _adopt_browser_id(browser_id: str) -> tuple[str, str]:
    """Give a new browser its id, and copy it into the session so the generation handlers record under it."""
    bid = history_tab.ensure_browser_id(browser_id)
    return bid, bid


def _models_deps(services: Services) -> ModelsDeps:
    return ModelsDeps(cache=services.cache, loaders={"chat": services.text, "text-generation": services.text,
                                                     "text-to-image": services.image},
                      placement_note=lambda: services.placement().note, catalog=services.catalog)


def _compare_deps(services: Services, owner: gr.State, datasets_state: gr.State) -> CompareDeps:
    c = services.compare
    return CompareDeps(engine=services.text, registry=services.registry, arena=c.arena, votes=c.votes,
                       evals=c.runner, datasets=services.datasets, history=services.history,
                       max_new_tokens=services.config.max_new_tokens, choices=services.catalog.choices("chat"),
                       default_model=services.catalog.default("chat"), slots=text_slots(services.config),
                       owner=owner, datasets_state=datasets_state)


def _finetune_deps(services: Services, datasets_state: gr.State) -> FinetuneDeps:
    catalog, browser = services.catalog, services.datasets
    return FinetuneDeps(service=services.finetune, rows=services.finetune.rows, catalog=catalog,
                        layout=services.finetune.layout,
                        upload=lambda path: browser.open_upload("finetune", path, path.rsplit("/", 1)[-1])[0].source,
                        samples=[(f"{s['title']} ({s['source']})", s["source"]) for s in browser.samples()],
                        datasets_state=datasets_state)


def preload(services: Services) -> None:
    """Load the default chat model in the background so the first message does not wait for it."""
    ref = services.catalog.default("chat")
    try:
        services.text.load(ref)
    except Exception:  # the tabs report load errors to the user when they ask for the model
        logger.exception("preloading %s failed", ref)


def mount_api(demo: gr.Blocks, services: Services) -> None:
    """Serve the OpenAI-compatible API on the same server, from the same engines, cache and batches."""
    config = services.config
    deps = ApiDeps(text=services.text, catalog=services.catalog, image=services.image, embedder=services.embedder,
                   limiter=services.limiter, keys=config.api_keys, keys_required=bool(config.auth),
                   max_new_tokens=config.max_new_tokens, max_input_chars=config.max_input_tokens * 8,
                   timeout_s=config.request_timeout_s, activity=services.registry.outside)
    demo.app.include_router(build_router(deps))


def launch(services: Services, demo: gr.Blocks, block: bool = True) -> gr.Blocks:
    config = services.config
    demo.queue(default_concurrency_limit=8, max_size=config.max_queue)
    demo.launch(
        server_name=config.host, server_port=config.port, share=config.share,
        auth=list(config.auth) or None, max_file_size=f"{config.max_upload_mb}mb",
        theme=gr.themes.Soft(), css_paths=[REPO_DIR / "assets" / "style.css"],
        prevent_thread_lock=True, quiet=False,
    )
    mount_api(demo, services)
    if services.compare is not None:  # evaluation runs a restart (or a crash) interrupted go on
        services.compare.runner.resume_interrupted()
    if services.finetune_jobs is not None:
        services.finetune_jobs.start()  # resumes a job an earlier run of the app left queued or killed
    if config.preload:
        threading.Thread(target=preload, args=(services,), name="preload", daemon=True).start()
    if block:
        demo.block_thread()
    return demo


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    start = time.perf_counter()
    config = AppConfig.from_args(argv)
    if config.torch_threads:
        import torch

        torch.set_num_threads(config.torch_threads)
    services = build_services(config)
    demo = build_app(services)
    logger.info("app built in %.2f s", time.perf_counter() - start)
    launch(services, demo)


if __name__ == "__main__":
    main()
