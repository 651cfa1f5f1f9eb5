"""The evaluation runner with a fake engine: failing models, stop and resume, History, summaries."""

from __future__ import annotations

import threading

import pytest
from fakes import FakeTextEngine

from compare.evaluation import EvalInputError, EvalRunner, EvalSpec
from compare.results import summary
from engines.text import ModelLoadError
from errors import UserError
from store import HistoryStore
from store.eval_runs import EvalStore

OWNER = "browser:alice0001"
ITEMS = [(f"question {i}", "Paris") for i in range(12)]


class FlakyEngine(FakeTextEngine):
    """Model 'flaky' answers its first `good` requests, then fails to load again (as after an eviction)."""

    def __init__(self, good: int, **kw):
        super().__init__(**kw)
        self.good, self.flaky_calls = good, 0
        self.lock = threading.Lock()

    def chat(self, ref, messages, params, stop=None, **kw):
        if ref == "flaky":
            with self.lock:
                self.flaky_calls += 1
                if self.flaky_calls > self.good:
                    raise ModelLoadError("cannot load flaky: its files went away")
        yield from super().chat(ref, messages, params, stop=stop, **kw)


@pytest.fixture
def history(tmp_path):
    from index.fake_embedder import HashEmbedder

    store = HistoryStore(tmp_path / "history", HashEmbedder(), start_worker=False)
    yield store
    store.close()


def spec(*models: str, **kw) -> EvalSpec:
    return EvalSpec(models=models, params={"temperature": 0.0, "max_new_tokens": 8, "seed": 0},
                    scorers=("contains",), **kw)


def test_a_model_that_cannot_load_fails_its_rows_and_the_run_goes_on(tmp_path, history):
    runner = EvalRunner(EvalStore(tmp_path), FakeTextEngine(reply="It is Paris"), history, workers=4)
    run = runner.start(OWNER, spec("missing/model", "good"), ITEMS)
    assert runner.wait(run, timeout=20)
    results = runner.store.results(run)
    assert runner.store.get(run).status == "done" and len(results) == 24
    missing = [r for r in results if r.model == "missing/model"]
    assert all(not r.ok and "missing/model could not be loaded: cannot find model" in r.error for r in missing)
    assert all(r.ok and r.scores == {"contains": 1.0} for r in results if r.model == "good")


def test_a_model_failing_mid_run_marks_only_its_failed_rows(tmp_path, history):
    runner = EvalRunner(EvalStore(tmp_path), FlakyEngine(good=5, reply="Paris"), history, workers=1)
    run = runner.start(OWNER, spec("flaky", "good"), ITEMS)
    assert runner.wait(run, timeout=20)
    flaky = [r for r in runner.store.results(run) if r.model == "flaky"]
    assert [r.ok for r in flaky] == [True] * 5 + [False] * 7
    assert "its files went away" in flaky[-1].error
    rows = {(s["model"], s["scorer"]): s for s in summary(runner.store.results(run), ["flaky", "good"])}
    assert rows["flaky", "contains"]["failed"] == 7 and rows["flaky", "contains"]["n"] == 5
    assert rows["good", "contains"]["mean"] == 1.0 and rows["good", "contains"]["n"] == 12


def test_stop_keeps_finished_rows_and_resume_adds_exactly_the_rest(tmp_path, history):
    engine = FakeTextEngine(reply="Paris " * 20, delay=0.01)
    runner = EvalRunner(EvalStore(tmp_path), engine, history, workers=2)
    run = runner.start(OWNER, spec("m1", "m2"), ITEMS)
    # stop once 3 rows are kept and a row is midway (the two workers' rows end together: wait for one to be under way)
    while runner.store.counts(run)[0] < 3 or max(list(engine.words_left.values()), default=0) < 5:
        threading.Event().wait(0.002)
    runner.stop(run)
    assert runner.wait(run, timeout=10)
    stopped = runner.store.counts(run)[0]
    assert runner.store.get(run).status == "stopped" and 3 <= stopped < 24
    assert "stop" in engine.finished, "rows in flight must end at once, not run to their end"
    runner.resume(run)
    assert runner.wait(run, timeout=30)
    results = runner.store.results(run)
    assert runner.store.get(run).status == "done"
    assert sorted((r.row, r.model) for r in results) == sorted((i, m) for i in range(12) for m in ("m1", "m2"))
    assert all(r.ok and r.stats["finish_reason"] != "stop" for r in results), "a stopped row is never kept"
    assert history.count(OWNER) == 24, "each output goes to History exactly once"
    found = history.search(OWNER, "question 7", mode="keyword", top_k=5)
    assert any(e.prompt == "question 7" and e.params["evaluation"] == run for e, _ in found)


def test_settings_that_cannot_work_are_refused_before_anything_starts(tmp_path):
    runner = EvalRunner(EvalStore(tmp_path), FakeTextEngine(), None, max_models=2)
    with pytest.raises(EvalInputError, match="between 1 and 2 models, got 3"):
        runner.start(OWNER, spec("a", "b", "c"), ITEMS)
    with pytest.raises(UserError, match="must contain \\{prompt\\}"):
        runner.start(OWNER, spec("a", template="Answer:"), ITEMS)
    with pytest.raises(UserError, match="no reference column"):
        runner.start(OWNER, spec("a"), [("q", None)])
    assert runner.store.runs(OWNER) == [], "a refused run leaves nothing behind"


def test_a_judge_model_grades_each_output_with_the_rubric(tmp_path):
    engine = FakeTextEngine(reply="Score: 8")
    runner = EvalRunner(EvalStore(tmp_path), engine, None, workers=2)
    run = runner.start(OWNER, spec("m1", judge="judge-model", rubric="Grade {output} for {prompt}"), ITEMS[:3])
    assert runner.wait(run, timeout=20)
    assert [r.scores for r in runner.store.results(run)] == [{"contains": 0.0, "judge": 0.8}] * 3
    judged = [c for c in engine.calls if c["messages"][0]["content"].startswith("Grade ")]
    assert len(judged) == 3 and judged[0]["messages"][0]["content"] == "Grade Score: 8 for question 0"
