"""An evaluation killed with SIGKILL mid-run resumes with exactly the missing rows (real engine, tiny Llamas)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from compare.evaluation import EvalRunner, EvalSpec
from engines.cache import ModelCache
from engines.device import choose_placement
from engines.params import GenerationParams
from engines.resolve import HubProbe, ModelResolver
from engines.text import TextEngine
from store import HistoryStore
from store.eval_runs import EvalStore

OWNER = "browser:alice0001"
CHILD = Path(__file__).with_name("eval_child.py")
ROWS = 40


def test_a_run_killed_mid_way_resumes_without_duplicating_or_losing_rows(tmp_path, models_root, tiny_llama,
                                                                         sharp_llama):
    from index.fake_embedder import HashEmbedder

    models = (str(tiny_llama), str(sharp_llama))
    spec = EvalSpec(models=models, params={"temperature": 0.0, "max_new_tokens": 32, "repetition_penalty": 1.0,
                                           "seed": 0}, mode="completion", scorers=("contains",))
    items = [(f"once upon a time there was a dragon number {i}", "dragon") for i in range(ROWS)]
    store = EvalStore(tmp_path)
    run = store.create(OWNER, {**spec.__dict__, "models": list(models)}, items)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(["." , "tests", "tests/index"])}
    child = subprocess.Popen([sys.executable, str(CHILD), str(tmp_path), str(models_root), run], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 90
    while store.counts(run)[0] < 6 and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=10)
    before = {(r.row, r.model): r.output for r in store.results(run)}
    assert 6 <= len(before) < 2 * ROWS, f"the kill must land mid-run: {len(before)} results ({child.stderr.read()})"
    assert store.get(run).status == "running", "a killed run is still marked running, for the restart to find"

    resolver = ModelResolver((models_root,), tmp_path / "converted", HubProbe(offline=True))
    engine = TextEngine(ModelCache(max_models=2), resolver, choose_placement("cpu", "float32"), max_batch=8)
    history = HistoryStore(tmp_path / "history", HashEmbedder(), start_worker=False)
    runner = EvalRunner(store, engine, history, workers=8)
    assert runner.resume_interrupted() == [run]
    assert runner.wait(run, timeout=120)

    results = store.results(run)
    assert store.get(run).status == "done"
    assert sorted((r.row, r.model) for r in results) == sorted((i, m) for i in range(ROWS) for m in models)
    assert all(r.ok for r in results)
    assert {(r.row, r.model): r.output for r in results if (r.row, r.model) in before} == before
    assert history.count(OWNER) == 2 * ROWS, "every output is in History exactly once"
    assert store.unrecorded(run) == []
    greedy = GenerationParams(**spec.params)
    for row in (0, ROWS - 1):  # rows of the sharp model, against the same prompt generated alone
        alone = "".join(u.delta for u in engine.complete(models[1], items[row][0], greedy))
        assert store.results(run, row, models[1])[0].output == alone
