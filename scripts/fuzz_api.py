"""Fuzz the OpenAI-compatible API: schemathesis sends generated requests (valid and invalid) to a launched app.

The app runs in this process with the fake text engine (tests/fakes.py), so thousands of chat and completion requests
cost milliseconds each; `--real-models` puts the real embedding model (MiniLM) and the embedded 64x64 text-to-image
model behind /v1/embeddings and /v1/images/generations. Runs are repeated with new seeds until `--min-requests` were
sent. Prints one JSON object: requests, statuses, server errors and check failures. Exit status 1 on any failure.

    make fuzz            # = PYTHONPATH=.:tests:tests/index:tests/hardening python scripts/fuzz_api.py
    python scripts/fuzz_api.py --examples 100 --min-requests 1000 [--real-models]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100, help="examples per operation and phase in one run")
    parser.add_argument("--min-requests", type=int, default=1000)
    parser.add_argument("--max-runs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--real-models", action="store_true", help="real MiniLM and text-to-image model")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import torch
    from api_fuzz import fuzz_services, run_schemathesis
    from helpers import start_app

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="fuzz-api-"))
    (work / "models").mkdir()
    services = fuzz_services(work / "app", work / "models", real_models=args.real_models)
    with contextlib.redirect_stdout(sys.stderr):  # gradio prints its URL; stdout carries only the JSON
        demo, url = start_app(services)
    totals = {"requests": 0, "test_cases": 0, "server_errors": 0, "check_failures": 0, "runs": []}
    statuses: Counter = Counter()
    start = time.perf_counter()
    try:
        for run in range(args.max_runs):
            if totals["requests"] >= args.min_requests:
                break
            report = run_schemathesis(url, work / f"run-{run}", args.examples, seed=args.seed + run, timeout_s=1800)
            summary = report.as_dict()
            statuses.update(report.statuses)
            for key in ("requests", "test_cases", "server_errors", "check_failures"):
                totals[key] += summary[key]
            totals["runs"].append({"seed": args.seed + run, **summary})
            if report.exit_code not in (0, 1):  # schemathesis itself failed: its output says why
                totals["schemathesis_output"] = report.output_tail
                break
    finally:
        with contextlib.redirect_stdout(sys.stderr):
            demo.close()
    totals.update(statuses={str(k): v for k, v in sorted(statuses.items())}, wall_s=round(time.perf_counter() - start),
                  examples_per_operation=args.examples, real_models=args.real_models,
                  date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    print(json.dumps(totals, indent=1))
    ok = totals["server_errors"] == 0 and totals["check_failures"] == 0 and totals["requests"] >= args.min_requests
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
