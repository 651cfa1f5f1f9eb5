"""Schemathesis against /v1 (a small budget here; `make fuzz` runs thousands): no 5xx, every status declared, every
body and server-sent event as the OpenAPI document says."""

from __future__ import annotations

import pytest
from api_fuzz import fuzz_services, run_schemathesis
from helpers import start_app


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory, models_root):
    services = fuzz_services(tmp_path_factory.mktemp("fuzz-app"), models_root)
    demo, url = start_app(services)
    yield url
    demo.close()


def test_v1_answers_generated_requests_without_server_errors_and_as_documented(fuzz_app, tmp_path):
    report = run_schemathesis(fuzz_app, tmp_path, examples=15, seed=17, timeout_s=240)
    assert report.requests >= 300, report.output_tail
    assert report.statuses[200] > 50 and report.statuses[400] > 50  # both valid and invalid requests got through
    assert report.server_errors == 0 and not report.failures and report.exit_code == 0, report.output_tail


def test_an_unreadable_body_is_refused_in_openai_shape(fuzz_app):
    import requests

    for body in (b"\xff\xfe{", b'{"messages": [', b'{"messages": "hi"}'):
        response = requests.post(fuzz_app + "v1/chat/completions", data=body, timeout=30,
                                 headers={"Content-Type": "application/json"})
        assert response.status_code == 400, body
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error" and error["message"], body
