"""Builds the long-lived objects the tabs share (cache, engines, registries) from the config, once."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from compare.arena import Arena
from compare.evaluation import EvalRunner
from config import AppConfig
from databrowser.browser import DatasetBrowser
from engines.cache import ModelCache
from engines.catalog import Catalog, load_catalog
from engines.device import Placement, choose_placement
from engines.image import ImageEngine
from engines.remote import RemoteTextEngine
from engines.resolve import HubProbe, ModelResolver
from engines.text import TextEngine
from finetune.layout import Layout
from finetune.manager import JobManager
from finetune.service import FinetuneService, rows_from_browser
from serving.limits import RateLimiter
from serving.sessions import StopRegistry
from store import CollectionIndex, HistoryStore
from store.embeddings import Embedder
from store.eval_runs import EvalStore
from store.history import default_embedder
from store.votes import VoteStore


@dataclass
class CompareServices:
    """The Compare tab's long-lived parts: open arena battles, votes, and the evaluation runner."""

    arena: Arena
    votes: VoteStore
    runner: EvalRunner


def build_compare(config: AppConfig, text: TextEngine, history: HistoryStore | None) -> CompareServices:
    """Votes and runs under `<data_dir>/compare/`; about twice a batch of rows in flight keeps a model's batch full."""
    slots = config.max_batch or 8  # what the UI runs at once (ui.common.text_slots), without importing the UI
    runner = EvalRunner(EvalStore.from_config(config), text, history, workers=2 * slots)
    return CompareServices(arena=Arena(), votes=VoteStore.from_config(config), runner=runner)


@dataclass
class Services:
    config: AppConfig
    catalog: Catalog
    cache: ModelCache
    placement: Callable[[], Placement]  # resolved on first use: importing torch would delay the server's start
    resolver: ModelResolver
    text: TextEngine
    image: ImageEngine
    registry: StopRegistry
    datasets: DatasetBrowser
    history: HistoryStore
    index: CollectionIndex
    embedder: Embedder | None = None
    limiter: RateLimiter | None = None
    compare: CompareServices | None = None  # the Compare tab is shown when set
    finetune: FinetuneService | None = None  # the Fine-tune tab's jobs (None: no tab)
    finetune_jobs: JobManager | None = None  # their queue; started by app.launch


def build_services(config: AppConfig) -> Services:
    """Wire the cache, resolver and engines together; loads no model."""
    catalog = load_catalog(config.catalog_path)
    max_bytes = int(config.max_memory_gb * 2**30) if config.max_memory_gb else None
    cache = ModelCache(config.max_loaded_models, max_bytes, config.idle_unload_s)
    placement = functools.cache(partial(choose_placement, config.device, config.dtype))
    resolver = ModelResolver(config.readable_dirs, config.models_dir, HubProbe(config.offline))
    text = TextEngine(cache, resolver, placement, trust_remote_code=config.trust_remote_code,
                      max_input_tokens=config.max_input_tokens, max_batch=config.max_batch,
                      split_linear=config.split_linear, pack_linear=config.pack_linear,
                      prefix_cache_bytes=config.prefix_cache_mb << 20,
                      max_waiting=config.max_queue, threads=config.torch_threads,
                      remote=RemoteTextEngine(catalog.remote), engine=config.engine,
                      ov_weights=config.ov_weights)
    embedder = default_embedder(cache, resolver)  # one MiniLM for history and collections, owned by the cache
    limiter = RateLimiter(config.rate_limit_per_min)  # one count per user across the UI and the API
    registry = StopRegistry(limiter, config.request_timeout_s)
    busy = foreground_busy(registry)
    history = HistoryStore.from_config(config, embedder=embedder, yield_to=busy)
    index = CollectionIndex.from_config(config, embedder=embedder, yield_to=busy)
    image = ImageEngine(cache, resolver, placement, default_ref=catalog.default("text-to-image"))
    datasets = DatasetBrowser.from_config(config)
    jobs = JobManager(Layout(config.data_dir / "finetune"), busy=busy)  # training yields to generations too
    finetune = FinetuneService(jobs.layout, jobs.store, resolver, rows_from_browser(datasets), _train_device)
    return Services(config=config, catalog=catalog, cache=cache, placement=placement, resolver=resolver, text=text,
                    image=image, registry=registry, datasets=datasets, history=history,
                    index=index, embedder=embedder, limiter=limiter, finetune=finetune, finetune_jobs=jobs,
                    compare=build_compare(config, text, history))


def _train_device() -> tuple[str, bool]:
    """Where the training runner will train, and whether that device trains in bfloat16."""
    import torch

    cuda = torch.cuda.is_available()
    return ("cuda", torch.cuda.is_bf16_supported()) if cuda else ("cpu", False)


def foreground_busy(registry: StopRegistry, quiet_s: float = 3.0, warmup_s: float = 10.0) -> Callable[[], bool]:
    """True while the app starts, while a generation runs and for `quiet_s` after: background embedding waits.

    On 2 cores an embedding batch (or loading the embedding model) beside a generation slows both; users send
    messages in bursts, so the pauses between them are where history gets embedded.
    """
    started = time.monotonic()
    return lambda: registry.idle_seconds() < quiet_s or time.monotonic() - started < warmup_s
