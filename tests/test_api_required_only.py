"""Every named endpoint works from gradio_client with only its required inputs (every optional one has a default)."""

from __future__ import annotations

import json

import pytest
from fakes import FakeTextEngine
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from helpers import fake_services, make_config, start_app

# A value for every input an endpoint may require; an endpoint that requires anything else fails the test below,
# so a new endpoint either gets defaults for its optional inputs or a line here.
REQUIRED_VALUES = {
    "message": "hello", "prompt": "a small red circle", "query": "hello", "source": "sample:shakespeare",
    "name": "notes", "column": "text", "entry_id": 1, "document_id": 1, "key": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "pool": ["m1", "m2"], "models": ["m1"], "battle": "no-such-battle", "winner": "A", "result": "{\"celsius\": 21}",
}
# calls whose refusal is the expected answer with these values (the message must still be the app's own)
REFUSALS_OK = {"/unload_model", "/history_open", "/history_rerun", "/history_delete", "/index_delete_document",
               "/restore_image_settings", "/index_add_dataset_column",
               "/vote",  # no battle of this client's is open
               "/eval_start",  # it needs a dataset or inline data besides the models, and says so
               "/datasets_export"}  # its dataset source is a text box that defaults to "" (then it says what to give)
FIRST = ["/index_create", "/chat", "/generate"]  # make something for the later calls to find
LAST = ["/index_delete", "/clear"]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, models_root):
    services = fake_services(make_config(tmp_path_factory.mktemp("api"), models_root),
                             FakeTextEngine(reply="fine thanks"))
    demo, url = start_app(services)
    yield url, tmp_path_factory.mktemp("files")
    demo.close()


def _file_values(folder) -> dict:
    (folder / "notes.txt").write_text("Kettles boil water in about three minutes.")
    (folder / "chat.json").write_text(json.dumps([{"role": "user", "content": "hi"}]))
    (folder / "plain.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # a PNG with no settings in it
    return {"files": [handle_file(str(folder / "notes.txt"))], "path": handle_file(str(folder / "chat.json")),
            "file": handle_file(str(folder / "plain.png"))}


def test_every_endpoint_runs_with_only_its_required_inputs(app_url):
    url, folder = app_url
    values = {**REQUIRED_VALUES, **_file_values(folder)}
    client = Client(url, verbose=False)  # one visitor: what /chat and /index_create made, the later calls find
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    order = [*FIRST, *sorted(set(endpoints) - set(FIRST) - set(LAST)), *LAST]
    problems = []
    for name in order:
        required = [p["parameter_name"] for p in endpoints[name]["parameters"] if not p["parameter_has_default"]]
        unknown = [r for r in required if r not in values]
        if unknown:
            problems.append(f"{name} requires {unknown}: give them defaults (or a value in REQUIRED_VALUES)")
            continue
        try:
            client.predict(**{r: values[r] for r in required}, api_name=name)
        except AppError as exc:
            message = str(exc)
            if name not in REFUSALS_OK or "No value provided" in message or "Internal error" in message:
                problems.append(f"{name}: {message}")
    assert not problems, "\n".join(problems)
