"""What the Fine-tune tab and its API call: inspect data, start, watch, stop, resume, evaluate, export, list.

Checks happen here, before a job exists: columns, empty rows, the validation split, the precision the device can
train in, and memory (the estimate against what the machine has free). Training itself runs in the runner process.
"""

from __future__ import annotations

import functools
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import psutil

from errors import LimitReached, NotFound, UserError
from finetune import data as fdata
from finetune import training
from finetune.estimate import Estimate, estimate, model_shape
from finetune.jobs import ACTIVE, DONE, RUNNING, Job, JobStore
from finetune.layout import Layout
from finetune.settings import TrainSettings, precisions_for

RowSource = Callable[[str], tuple[list[str], list[dict]]]  # source string -> (columns, rows)
MEMORY_HEADROOM = 0.9  # refuse a run whose estimate exceeds this share of the memory available
MAX_ROWS = 100_000  # a CPU run reads at most this many rows of a dataset
BROWSER_SESSION = "finetune"  # the datasets the tab reads are held apart from anyone's open tables


class Resolver(Protocol):
    def resolve(self, ref: str, progress: Any = None) -> Any: ...


@dataclass(frozen=True)
class Inspection:
    """A dataset read through a spec and a base model's tokenizer, before training."""

    spec: fdata.DataSpec
    columns: list[str]
    examples: list[fdata.Example]
    skipped: int
    stats: fdata.TokenStats
    train_rows: int
    val_rows: int
    estimate: Estimate
    available_bytes: int
    location: str
    local_only: bool

    def summary(self) -> str:
        skipped = f" · {self.skipped:,} empty rows skipped" if self.skipped else ""
        return (f"{self.stats.describe()}{skipped}\n\n{self.train_rows:,} for training, {self.val_rows:,} for "
                f"validation · {self.estimate.describe(self.available_bytes)}")


class FinetuneService:
    """Args:
        layout: the fine-tune folder (store, job files).
        store: the job store the manager watches.
        resolver: finds the base model's files (the app's resolver: folders, hub cache, hub, embedded copy).
        rows: reads a dataset's columns and rows by source string (the Datasets tab's sources).
        device: "cpu" or "cuda": what the runner will train on.
        available: bytes of memory free now.
    """

    def __init__(self, layout: Layout, store: JobStore, resolver: Resolver, rows: RowSource,
                 device: Callable[[], tuple[str, bool]], available: Callable[[], int] | None = None):
        self.layout, self.store, self.resolver, self.rows = layout, store, resolver, rows
        self.device = device
        self.available = available or (lambda: psutil.virtual_memory().available)

    # -- before a run ----------------------------------------------------------------------------------------
    def precisions(self) -> list[str]:
        return precisions_for(*self.device())

    def inspect(self, base: str, spec: fdata.DataSpec, settings: TrainSettings) -> Inspection:
        """Read, format and measure the data; raise UserError for anything that would make the run fail."""
        if settings.precision not in self.precisions():
            raise UserError(f"precision {settings.precision} cannot train on this {self.device()[0]}; choose one "
                            f"of {self.precisions()}")
        columns, rows = self.rows(spec.source)
        fdata.check_columns(spec, columns)
        location, local_only = self._locate(base)
        tokenizer = _tokenizer(location, local_only)
        examples, skipped = fdata.to_examples(rows, spec, tokenizer)
        stats = fdata.token_stats(fdata.token_lengths(examples, tokenizer), settings.cutoff_len)
        train_rows, val_rows = fdata.split_sizes(len(examples), settings.val_split)
        steps = training.total_steps(settings, train_rows)
        est = estimate(_shape(location, local_only), settings, steps, min(stats.mean, settings.cutoff_len),
                       stats.longest, self.measured_rate(base))
        return Inspection(spec, columns, examples, skipped, stats, train_rows, val_rows, est, self.available(),
                          location, local_only)

    def _locate(self, base: str) -> tuple[str, bool]:
        try:
            resolved = self.resolver.resolve(base)
        except LookupError as exc:  # ModelNotFound: the message lists what was tried
            raise NotFound(str(exc)) from None
        if getattr(resolved, "adapter", ""):
            raise UserError(f"{base} is an adapter; train on its base model, or merge and export it first")
        return resolved.location, resolved.local_only

    def measured_rate(self, base: str) -> float | None:
        rates = [j.tokens_per_s for j in self.store.list((DONE,)) if j.base == base and j.tokens_per_s]
        return sum(rates) / len(rates) if rates else None

    # -- runs ------------------------------------------------------------------------------------------------
    def start(self, base: str, spec: fdata.DataSpec, settings: TrainSettings, name: str = "") -> tuple[Job, str]:
        """Queue a run; returns the job and what the person should know (truncation, estimate, queue place)."""
        ins = self.inspect(base, spec, settings)
        if ins.estimate.memory_bytes > ins.available_bytes * MEMORY_HEADROOM:
            raise LimitReached(f"not enough memory: this run needs about {ins.estimate.memory_bytes / 2**30:.1f} GB "
                               f"and {ins.available_bytes / 2**30:.1f} GB is available; lower the batch size or the "
                               f"cutoff length, or free memory (unload models in the Models tab)")
        key = uuid.uuid4().hex
        training.write_examples(self.layout.examples(key), ins.examples)
        data = {"source": spec.source, "kind": spec.kind, "prompt_column": spec.prompt_column,
                "response_column": spec.response_column, "template": spec.template, "examples": len(ins.examples),
                "skipped_empty": ins.skipped, "train": ins.train_rows, "validation": ins.val_rows,
                "truncated": ins.stats.truncated, "cutoff": settings.cutoff_len, "tokens_per_epoch": ins.stats.tokens,
                "base_location": ins.location, "local_only": ins.local_only,
                "examples_file": str(self.layout.examples(key))}
        name = name.strip() or f"{base.rstrip('/').rsplit('/', 1)[-1]} on {Path(spec.source).name or spec.source}"
        ahead = len(self.store.list(ACTIVE))
        job = self.store.get(self.store.add(name, base, settings.to_dict(), data))
        self.store.log(job.id, f"queued: {ins.summary()}")
        note = f"Job #{job.id} queued" + (f" behind {ahead} other job(s)" if ahead else "") + "."
        if ins.stats.truncated:
            note += f" {ins.stats.truncated:,} example(s) are longer than the cutoff of {settings.cutoff_len} tokens " \
                    f"and will be cut."
        return job, note

    def job(self, job_id: int | None = None) -> Job | None:
        """The job asked for; without an id the running one, else the newest."""
        if job_id:
            return self.store.get(int(job_id))
        jobs = self.store.list()
        return next((j for j in jobs if j.status == RUNNING), jobs[0] if jobs else None)

    def stop(self, job_id: int | None = None) -> Job:
        job = self.job(job_id)
        if job is None:
            raise NotFound("there is no fine-tuning job to stop")
        if job.status not in ACTIVE:
            raise UserError(f"job #{job.id} is {job.status}; only a queued or running job can be stopped")
        self.store.log(job.id, "stop requested")
        return self.store.request_stop(job.id)

    def resume(self, job_id: int, step: int | None = None) -> Job:
        """Queue a stopped, failed or finished job again from checkpoint `step` (default: its last one); later
        checkpoints, losses and the finished adapter are discarded, since the run replays those steps."""
        job = self.store.get(int(job_id))
        if job.status in ACTIVE:
            raise UserError(f"job #{job.id} is already {job.status}")
        found = dict(self.layout.checkpoints(job.id))
        if step is not None and int(step) not in found:
            raise NotFound(f"job #{job.id} has no checkpoint at step {step}; it has {sorted(found) or 'none'}")
        step = int(step) if step is not None else (max(found) if found else 0)
        for later, folder in found.items():
            if later > step:
                shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(self.layout.adapter(job.id), ignore_errors=True)
        self.store.forget_after(job.id, step)
        self.store.update(job.id, attempts=0, step=step)
        start = f"checkpoint-{step}" if step else "the beginning (no checkpoint)"
        self.store.requeue(job.id, str(found.get(step, "")), f"resume requested from {start}")
        return self.store.get(job.id)

    def checkpoints(self, job_id: int) -> list[tuple[int, Path]]:
        return self.layout.checkpoints(int(job_id))

    def checkpoint(self, job_id: int, step: int) -> Path:
        found = dict(self.checkpoints(job_id))
        if int(step) not in found:
            raise NotFound(f"job #{job_id} has no checkpoint at step {step}; it has {sorted(found) or 'none'}")
        return found[int(step)]

    def adapters(self) -> list[dict[str, Any]]:
        """Finished adapters as model choices: `ref` is the adapter folder (it names its base)."""
        out = []
        for job in self.store.list((DONE,)):
            folder = self.layout.adapter(job.id)
            if (folder / "adapter_config.json").is_file():
                out.append({"label": f"{job.base} + {job.name} (#{job.id})", "ref": str(folder), "job": job.id,
                            "base": job.base, "step": job.step, "finished": job.finished})
        return out



def rows_from_browser(browser: Any) -> RowSource:
    """Rows of any source the Datasets tab opens (sample:, a path, hub:, upload:), as the row source."""
    from databrowser import DatasetError, SourceRef

    def rows(source: str) -> tuple[list[str], list[dict]]:
        if not (source or "").strip():
            raise UserError("choose a dataset: a sample, a path, hub:<owner/name>, or upload a file")
        try:
            ds = browser.open(BROWSER_SESSION, SourceRef(source.strip()))
        except DatasetError as exc:
            raise UserError(str(exc)) from None
        names = [c.name for c in ds.columns]
        return names, ds.table.slice(0, MAX_ROWS).to_pylist()

    return rows


@functools.lru_cache(maxsize=4)
def _tokenizer(location: str, local_only: bool):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(location, local_files_only=local_only)


@functools.lru_cache(maxsize=4)
def _shape(location: str, local_only: bool) -> dict[str, Any]:
    return model_shape(location, local_only)


def elapsed(job: Job) -> float:
    end = job.finished or time.time()
    return max(0.0, end - job.started) if job.started else 0.0
