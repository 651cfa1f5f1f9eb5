"""Schemathesis against the /v1 OpenAPI document: generated requests (valid and invalid) sent to a launched app.

Shared by the suite's small run (tests/hardening/test_api_fuzz.py) and the long one (scripts/fuzz_api.py). Every
response must not be a 5xx, must have a status the document declares, and must match the declared schema.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hypothesis
import requests
import schemathesis
from fakes import FakeImageEngine, FakeTextEngine
from helpers import fake_services, make_config
from hypothesis import HealthCheck, given, settings
from hypothesis import Phase as HypothesisPhase
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from serving.openai_api import openapi_schema

CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


@dataclass
class FuzzReport:
    """What a run sent and what came back; `failures` holds one line per failed check, with a curl to replay it."""

    requests: int = 0
    statuses: Counter = field(default_factory=Counter)
    by_operation: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)

    def as_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "server_errors": self.server_errors, "check_failures": len(self.failures),
                "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
                "by_operation": dict(self.by_operation), "seconds": round(self.seconds, 1),
                "failures": self.failures[:20]}


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


def fuzz(url: str, examples: int, seed: int = 0) -> FuzzReport:
    """Send `examples` generated requests per operation and per mode (valid, then invalid data) to `url`."""
    schema = schemathesis.openapi.from_dict(openapi_schema())
    report, start = FuzzReport(), time.perf_counter()
    session = requests.Session()
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _run_operation(operation, mode, url, examples, seed, session, report)
    report.seconds = time.perf_counter() - start
    return report


def _run_operation(operation, mode: GenerationMode, url: str, examples: int, seed: int, session: requests.Session,
                   report: FuzzReport) -> None:
    @settings(max_examples=examples, deadline=None, database=None, derandomize=False,
              phases=[HypothesisPhase.generate], suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def send(case) -> None:
        response = case.call(base_url=url.rstrip("/"), session=session, timeout=60)
        report.requests += 1
        report.statuses[response.status_code] += 1
        report.by_operation[f"{operation.label} {response.status_code}"] += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except (Exception, BaseExceptionGroup) as exc:  # every failed check is recorded, and the run goes on
            first = str(exc).strip().splitlines()
            report.failures.append(f"{operation.label} [{mode.value}] {response.status_code}: "
                                   f"{' | '.join(first[:6])[:600]} -- {case.as_curl_command()[:600]}")

    try:
        hypothesis.seed(seed)(send)()
    except hypothesis.errors.Unsatisfiable:  # nothing to make invalid (GET /v1/models has no inputs)
        pass
