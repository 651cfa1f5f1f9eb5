"""Schemathesis against the /v1 OpenAPI document: generated requests, valid and invalid, sent to a launched app.

Shared by the suite's small run (tests/hardening/test_api_fuzz.py) and the long one (scripts/fuzz_api.py). It runs
the schemathesis command line (its examples, coverage and fuzzing phases) with three checks on every response: not a
5xx, a status the document declares, a body (or each server-sent event) that matches the declared schema. Requests
and statuses are counted from schemathesis' HAR log of the run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fakes import FakeImageEngine, FakeTextEngine
from helpers import fake_services, make_config

from serving.openai_api import openapi_schema

CHECKS = "not_a_server_error,status_code_conformance,response_schema_conformance"


@dataclass
class FuzzReport:
    """What one schemathesis run sent and found."""

    requests: int = 0
    statuses: Counter = field(default_factory=Counter)
    test_cases: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)  # schemathesis' failure kinds, with counts
    exit_code: int = 0
    seconds: float = 0.0
    output_tail: str = ""

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)

    def as_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "test_cases": self.test_cases, "server_errors": self.server_errors,
                "check_failures": sum(f.get("count", 1) for f in self.failures), "failures": self.failures,
                "statuses": {str(k): v for k, v in sorted(self.statuses.items())}, "exit_code": self.exit_code,
                "seconds": round(self.seconds, 1)}


def fuzz_services(tmp: Path, models_root: Path, real_models: bool = False):
    """App services with the fake text engine; the image and embedding paths are real models when `real_models`
    (the embedded 64x64 text-to-image model and MiniLM), else cheap fakes behind the same HTTP code."""
    config = make_config(tmp, models_root, rate_limit_per_min=0, request_timeout_s=20.0)
    if not real_models:
        return fake_services(config, FakeTextEngine(), image=FakeImageEngine())
    from engines.cache import ModelCache
    from engines.device import Placement
    from engines.image import ImageEngine
    from engines.resolve import HubProbe, ModelResolver
    from store.history import default_embedder

    resolver = ModelResolver(config.readable_dirs, config.models_dir, HubProbe(offline=True))
    cache = ModelCache(max_models=3)
    image = ImageEngine(cache, resolver, lambda: Placement("cpu", "float32", "cpu"), threads=1)
    return fake_services(config, FakeTextEngine(), embedder=default_embedder(cache, resolver), image=image)


def run_schemathesis(url: str, out_dir: Path, examples: int, seed: int = 0, timeout_s: float = 600) -> FuzzReport:
    """One `schemathesis run` of the /v1 document against `url` (examples per operation and phase: `examples`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    schema_path = out_dir / "openapi-v1.json"
    schema_path.write_text(json.dumps(openapi_schema()))
    har, summary = out_dir / "requests.har", out_dir / "run.json"
    command = [sys.executable, "-m", "schemathesis.cli", "run", str(schema_path), "--url", url.rstrip("/"),
               "--checks", CHECKS, "--phases", "examples,coverage,fuzzing", "--max-examples", str(examples),
               "--seed", str(seed), "--workers", "1", "--request-timeout", "60", "--generation-database", "none",
               "--continue-on-failure", "--no-color", "--report", "har,json", "--report-har-path", str(har),
               "--report-json-path", str(summary)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, cwd=out_dir)
    report = FuzzReport(exit_code=done.returncode, output_tail=(done.stdout + done.stderr)[-6000:])
    entries = json.loads(har.read_text())["log"]["entries"] if har.exists() else []
    report.requests = len(entries)
    report.statuses = Counter(e["response"]["status"] for e in entries)
    if summary.exists():
        run = json.loads(summary.read_text())
        report.test_cases = run["test_cases"]["generated"]
        report.failures = run["failures"]
        report.seconds = run["running_time"]
    return report
