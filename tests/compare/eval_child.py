"""Resume one evaluation run in a process of its own (the SIGKILL test kills it mid-run).

Usage: python tests/compare/eval_child.py DATA_DIR MODELS_ROOT RUN_ID
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")


def main(data_dir: Path, models_root: Path, run_id: str) -> None:
    import torch
    from index.fake_embedder import HashEmbedder

    from compare.evaluation import EvalRunner
    from engines.cache import ModelCache
    from engines.device import choose_placement
    from engines.resolve import HubProbe, ModelResolver
    from engines.text import TextEngine
    from store import HistoryStore
    from store.eval_runs import EvalStore

    torch.set_num_threads(1)
    resolver = ModelResolver((models_root,), data_dir / "converted", HubProbe(offline=True))
    engine = TextEngine(ModelCache(max_models=2), resolver, choose_placement("cpu", "float32"), max_batch=8)
    history = HistoryStore(data_dir / "history", HashEmbedder(), start_worker=False)
    runner = EvalRunner(EvalStore(data_dir), engine, history, workers=8)
    runner.resume(run_id)
    runner.wait(run_id)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3])
