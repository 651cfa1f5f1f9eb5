"""Evaluation runs in the background: every prompt through every model, scored, each result kept as it finishes.

A run is a thread per run; its rows go to the engine concurrently (`workers` at a time), so rows on one model share
that model's batch. Results live in `EvalStore` (SQLite), so a page reload only asks for the status again, and a
restart (or a kill) resumes with the rows still missing. A row stopped midway is not kept: it runs again on resume.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

from compare.prompts import check_template, fill_template
from compare.protocols import ROW_FAILURES, Recorder, TextGenerator, failure_text
from compare.scorers import ScoreSet, judge_prompt, parse_judge_score
from engines.params import GenerationParams
from errors import UserError, internal_message, log_internal
from store.eval_runs import EvalStore

logger = logging.getLogger(__name__)
MODES = ("chat", "completion")


class EvalInputError(UserError):
    """The run's settings cannot work (no models, too many, an unknown mode, no prompts)."""


@dataclass(frozen=True)
class EvalSpec:
    """Everything a run needs besides its prompts; stored as JSON with the run."""

    models: tuple[str, ...]
    params: dict  # GenerationParams fields
    mode: str = "chat"
    template: str = "{prompt}"
    system: str = ""
    scorers: tuple[str, ...] = ()
    pattern: str = ""
    judge: str = ""  # a chat model asked to grade each output with `rubric` ('' for none)
    rubric: str = ""
    label: str = ""  # which dataset and column, for people

    def check(self, max_models: int) -> EvalSpec:
        if not self.models or len(self.models) > max_models:
            raise EvalInputError(f"choose between 1 and {max_models} models, got {len(self.models)}")
        if len(set(self.models)) != len(self.models):
            raise EvalInputError(f"a model is listed twice in {list(self.models)}")
        if self.mode not in MODES:
            raise EvalInputError(f"mode must be one of {MODES}, got {self.mode!r}")
        check_template(self.template)
        ScoreSet(self.scorers, self.pattern)
        return self

    @classmethod
    def from_dict(cls, data: dict) -> EvalSpec:
        return cls(**{**data, "models": tuple(data["models"]), "scorers": tuple(data.get("scorers", ()))})


@dataclass
class _Live:
    """A run going on in this process: its stop flag, the rows' own stop events, and the pace since it started."""

    stop: threading.Event
    thread: threading.Thread | None = None
    rows: set[threading.Event] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    started: float = field(default_factory=time.monotonic)
    done_at_start: int = 0


class EvalRunner:
    """Starts, resumes, stops and reports evaluation runs.

    Args:
        store: where runs and results are kept.
        engine: the text engine (its public chat / complete).
        history: every output is recorded here when given.
        workers: rows in flight at once (about twice a model's batch keeps the batch full).
        max_models: most models in one run.
    """

    def __init__(self, store: EvalStore, engine: TextGenerator, history: Recorder | None = None, workers: int = 16,
                 max_models: int = 4):
        self.store, self.engine, self.history = store, engine, history
        self.workers, self.max_models = max(1, workers), max_models
        self._live: dict[str, _Live] = {}
        self._lock = threading.Lock()

    # -- control -------------------------------------------------------------------------------------------
    def start(self, owner: str, spec: EvalSpec, items: list[tuple[str, str | None]]) -> str:
        """Create a run for `owner` and start it in the background; returns the run id."""
        spec.check(self.max_models)
        if not items:
            raise EvalInputError("there are no prompts to evaluate")
        ScoreSet(spec.scorers, spec.pattern).check_reference(any(r is not None for _, r in items))
        run_id = self.store.create(owner, {**asdict(spec), "models": list(spec.models)}, items)
        self.resume(run_id)
        return run_id

    def resume(self, run_id: str) -> bool:
        """Go on with a run's missing rows in a background thread; False when it is already running here."""
        with self._lock:
            if run_id in self._live:
                return False
            live = self._live[run_id] = _Live(threading.Event(), done_at_start=self.store.counts(run_id)[0])
        self.store.set_status(run_id, "running")
        live.thread = threading.Thread(target=self._run, args=(run_id, live), name=f"eval-{run_id}", daemon=True)
        live.thread.start()
        return True

    def resume_interrupted(self) -> list[str]:
        """Resume every run left 'running' by a previous process (a restart, a crash, a kill)."""
        resumed = [r.id for r in self.store.with_status("running") if self.resume(r.id)]
        if resumed:
            logger.info("resuming %d interrupted evaluation runs: %s", len(resumed), ", ".join(resumed))
        return resumed

    def stop(self, run_id: str) -> bool:
        """Stop a run: rows in flight end at their next token and are left to a later resume."""
        with self._lock:
            live = self._live.get(run_id)
        if live is None:
            if self.store.get(run_id).status == "running":  # left running by a process that is gone
                self.store.set_status(run_id, "stopped")
                return True
            return False
        live.stop.set()
        with live.lock:
            for event in live.rows:
                event.set()
        return True

    def wait(self, run_id: str, timeout: float | None = None) -> bool:
        """Block until the run's thread ends; True when it has."""
        with self._lock:
            live = self._live.get(run_id)
        if live is None or live.thread is None:
            return True
        live.thread.join(timeout)
        return not live.thread.is_alive()

    def pace(self, run_id: str) -> tuple[float, int] | None:
        """(seconds since this process took the run up, rows finished since) while it runs here."""
        with self._lock:
            live = self._live.get(run_id)
        if live is None:
            return None
        return time.monotonic() - live.started, self.store.counts(run_id)[0] - live.done_at_start

    # -- the run's thread ----------------------------------------------------------------------------------
    def _run(self, run_id: str, live: _Live) -> None:
        try:
            run = self.store.get(run_id)
            spec = EvalSpec.from_dict(run.spec)
            self._backfill_history(run_id, run.owner, spec)
            for model in spec.models:
                if live.stop.is_set():
                    break
                pending = self.store.pending(run_id, model)
                if pending and self._loaded(run_id, model, pending, spec):
                    self._rows(run_id, run.owner, spec, model, pending, live)
            self.store.set_status(run_id, "stopped" if live.stop.is_set() else "done")
        except Exception as exc:  # the run's own machinery failed: say so on the run, keep what finished
            self.store.set_status(run_id, "failed", internal_message(log_internal(exc, f"evaluation run {run_id}")))
        finally:
            with self._lock:
                self._live.pop(run_id, None)

    def _loaded(self, run_id: str, model: str, pending: list, spec: EvalSpec) -> bool:
        """Load `model` once before its rows; when it cannot load, every one of its rows is marked failed."""
        if self.engine.is_loaded(model):
            return True
        try:
            self.engine.load(model)
            return True
        except Exception as exc:  # whatever the cause, this model's rows cannot run: they say why, the run goes on
            message = f"{model} could not be loaded: {failure_text(exc)}"
        logger.warning("evaluation %s: %s", run_id, message)
        for row, _, _ in pending:
            self.store.add_result(run_id, row, model, False, "", {}, {}, message)
        return False

    def _rows(self, run_id: str, owner: str, spec: EvalSpec, model: str, pending: list, live: _Live) -> None:
        scores = ScoreSet(spec.scorers, spec.pattern)
        params = GenerationParams(**spec.params)

        def one(item: tuple[int, str, str | None]) -> None:
            if live.stop.is_set():
                return
            row, prompt, reference = item
            self._row(run_id, owner, spec, model, params, scores, live, row, prompt, reference)

        with ThreadPoolExecutor(self.workers, thread_name_prefix=f"eval-{run_id}") as pool:
            list(pool.map(one, pending))

    def _row(self, run_id: str, owner: str, spec: EvalSpec, model: str, params: GenerationParams,
             scores: ScoreSet, live: _Live, row: int, prompt: str, reference: str | None) -> None:
        try:
            text, stats = self._generate(model, spec, params, fill_template(spec.template, prompt), live)
        except Exception as exc:  # the row says why it failed; the other rows go on
            self.store.add_result(run_id, row, model, False, "", {}, {}, failure_text(exc))
            return
        if stats.get("finish_reason") == "stop":  # stopped midway: left for a resume, never kept half-done
            return
        values = scores.score(text, reference)
        if spec.judge:
            values.update(self._judge(spec, prompt, text, reference, live))
        if self.store.add_result(run_id, row, model, True, text, values, stats):
            self._record(run_id, owner, spec, row, model, prompt, text, stats)

    def _generate(self, model: str, spec: EvalSpec, params: GenerationParams, prompt: str,
                  live: _Live) -> tuple[str, dict]:
        stop = threading.Event()  # one per row: a generation sets its own event when it ends
        with live.lock:
            live.rows.add(stop)
        if live.stop.is_set():
            stop.set()
        try:
            if spec.mode == "chat":
                system = [{"role": "system", "content": spec.system}] if spec.system else []
                stream = self.engine.chat(model, [*system, {"role": "user", "content": prompt}], params, stop=stop)
            else:
                stream = self.engine.complete(model, prompt, params, stop=stop)
            text, stats = "", {}
            for update in stream:
                text += update.delta
                if update.stats is not None:
                    stats = asdict(update.stats)
            return text, stats
        finally:
            with live.lock:
                live.rows.discard(stop)

    def _judge(self, spec: EvalSpec, prompt: str, output: str, reference: str | None, live: _Live) -> dict:
        """The judge's score (0.1-1.0) of one output; left out when the judge fails or gives no number."""
        question = judge_prompt(spec.rubric, prompt, output, reference)
        greedy = GenerationParams(temperature=0.0, max_new_tokens=16, seed=0)
        try:
            reply, _ = self._generate(spec.judge, EvalSpec.from_dict({**asdict(spec), "mode": "chat", "system": ""}),
                                      greedy, question, live)
        except ROW_FAILURES as exc:
            logger.warning("judge %s failed: %s", spec.judge, exc)
            return {}
        score = parse_judge_score(reply)
        return {} if score is None else {"judge": score}

    # -- history -------------------------------------------------------------------------------------------
    def _record(self, run_id: str, owner: str, spec: EvalSpec, row: int, model: str, prompt: str, output: str,
                stats: dict) -> None:
        if self.history is None:
            return
        timings = {k: stats.get(k) for k in ("ttft_s", "total_s", "tokens_per_s", "generated_tokens", "prompt_tokens")}
        try:
            entry = self.history.record(owner, "chat" if spec.mode == "chat" else "completion",
                                        fill_template(spec.template, prompt), output, model,
                                        {**spec.params, "evaluation": run_id, "row": row}, stats.get("seed"), timings)
            self.store.set_history_id(run_id, row, model, entry)
        except Exception:  # the result is kept; the next resume (or restart) records it again
            logger.exception("could not record evaluation %s row %d in history", run_id, row)

    def _backfill_history(self, run_id: str, owner: str, spec: EvalSpec) -> None:
        """Record results a kill left out of History; one that reached History but not its id there is only linked.

        A result is committed first, then recorded, then linked: a kill between any two steps leaves a state this
        tells apart, so every output ends up in History exactly once.
        """
        for row, model in self.store.unrecorded(run_id) if self.history is not None else []:
            recorded = [e.id for e in self.history.list(owner, model=model, limit=500)
                        if e.params.get("evaluation") == run_id and e.params.get("row") == row]
            if recorded:
                self.store.set_history_id(run_id, row, model, recorded[0])
                continue
            r = self.store.results(run_id, row, model)[0]
            self._record(run_id, owner, spec, row, model, r.prompt, r.output, r.stats)
