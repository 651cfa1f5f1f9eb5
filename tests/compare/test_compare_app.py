"""The Compare tab in the launched app, driven by gradio_client and raw HTTP, around a fake engine."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from fakes import FakeTextEngine
from gradio_client import Client
from gradio_client.exceptions import AppError
from helpers import fake_services, make_config, start_app

POOL = ["alpha-secret-model", "beta-secret-model"]


@pytest.fixture(scope="module")
def running(tmp_path_factory, models_root):
    engine = FakeTextEngine(reply="Paris is the capital of France", delay=0.005)
    services = fake_services(make_config(tmp_path_factory.mktemp("compare"), models_root), engine)
    demo, url = start_app(services)
    yield engine, services, url
    demo.close()


def client(url: str) -> Client:
    return Client(url, verbose=False)


def test_endpoints_are_named(running):
    names = set(client(running[2]).view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/compare", "/arena", "/vote", "/leaderboard", "/votes_csv", "/eval_start", "/eval_status",
            "/eval_results", "/eval_stop"} <= names


def test_columns_keep_their_own_settings_and_conversations(running):
    engine, _, url = running
    c = client(url)
    columns = [{"model": "m1", "temperature": 0.0, "seed": 5}, {"model": "m1", "temperature": 1.3, "seed": 6},
               {"model": "m2", "max_new_tokens": 3}]
    first = c.predict("Capital of France?", columns, api_name="/compare")
    assert [col["text"] for col in first["columns"]] == ["Paris is the capital of France"] * 2 + ["Paris is the"]
    assert [col["stats"]["seed"] for col in first["columns"][:2]] == [5, 6]
    asked = engine.calls[-3:]
    assert sorted(call["params"].temperature for call in asked) == [0.0, 0.2, 1.3]
    second = c.predict("And of Italy?", columns, conversations=first["conversations"], api_name="/compare")
    sent = [call["messages"] for call in engine.calls[-3:]]
    assert all([m["content"] for m in msgs if m["role"] == "user"] == ["Capital of France?", "And of Italy?"]
               for msgs in sent), "a follow-up continues every column's own conversation"
    assert len(second["conversations"][2]) == 4 and second["conversations"][2][1]["content"] == "Paris is the"


def test_stop_ends_every_column(running):
    engine, _, url = running
    c = client(url)
    engine.reply = " ".join(f"w{i}" for i in range(400))  # 2 s a column unless stopped
    try:
        job = c.submit("long", [{"model": "m1"}, {"model": "m2"}], api_name="/compare")
        time.sleep(0.5)
        c.predict(api_name="/stop")
        result = job.result(timeout=10)
    finally:
        engine.reply = "Paris is the capital of France"
    assert [col["stats"]["finish_reason"] for col in result["columns"]] == ["stop", "stop"]
    assert all(len(col["text"].split()) < 300 for col in result["columns"])


def _sse(url: str, path: str, body: dict) -> str:
    event = httpx.post(url + path, json=body, timeout=30).json()["event_id"]
    return httpx.get(f"{url}{path}/{event}", timeout=60).text


def test_names_never_reach_an_api_client_before_the_vote(running):
    _, _, url = running
    raw = _sse(url, "gradio_api/call/arena", {"data": ["Capital?", POOL, 0.7, 16], "session_hash": "raw0000001"})
    assert "event: complete" in raw and "Paris" in raw
    assert not any(name in raw for name in POOL), raw
    battle = json.loads(raw.split("data: ")[-1])[0]["battle"]
    with pytest.raises(AppError, match="no open battle"):  # someone else cannot vote (nor learn the names)
        client(url).predict(battle, "A", api_name="/vote")
    revealed = _sse(url, "gradio_api/call/vote", {"data": [battle, "B", False], "session_hash": "raw0000001"})
    assert all(name in revealed for name in POOL) and '"winner": "model_b"' in revealed


def test_names_never_reach_the_browser_before_the_vote(running):
    """The UI's own battle event, called the way the page calls it: the whole SSE stream it answers with."""
    _, _, url = running
    config = httpx.get(url + "config").json()
    ids = {c["props"].get("elem_id"): c["id"] for c in config["components"] if c.get("props", {}).get("elem_id")}
    fn_index, dep = next((i, d) for i, d in enumerate(config["dependencies"]) if [ids["arena-go"], "click"] in
                         [list(t) for t in d["targets"]])
    defaults = {c["id"]: c.get("props", {}).get("value") for c in config["components"]}
    values = {**defaults, ids["arena-prompt"]: "Capital?", ids["arena-pool"]: POOL}
    data = [values.get(i) for i in dep["inputs"]]
    with httpx.Client(timeout=60) as http:
        http.post(url + "gradio_api/queue/join", json={"data": data, "fn_index": fn_index, "session_hash": "page01",
                                                       "event_data": None, "trigger_id": ids["arena-go"]})
        stream = ""
        with http.stream("GET", url + "gradio_api/queue/data", params={"session_hash": "page01"}) as response:
            for line in response.iter_lines():
                stream += line + "\n"
                if "process_completed" in line:
                    break
    assert "Paris" in stream and '"success":true' in stream, stream[-500:]
    assert not any(name in stream for name in POOL)


def test_votes_are_per_owner_and_shared_only_when_allowed(running):
    _, _, url = running
    mine, other = client(url), client(url)
    for winner, share in (("A", True), ("tie", False), ("both_bad", True)):
        battle = mine.predict("Q?", POOL + ["gamma-model"], api_name="/arena")["battle"]
        mine.predict(battle, winner, share=share, api_name="/vote")
    board = mine.predict(api_name="/leaderboard")
    assert board["votes"] == 3 and sum(r["battles"] for r in board["rows"]) == 6
    assert other.predict(api_name="/leaderboard")["votes"] == 0, "another person's votes are not theirs"
    shared = other.predict("shared", api_name="/leaderboard")
    assert shared["votes"] >= 2 and all(r["bt_low"] <= r["bt"] <= r["bt_high"] for r in shared["rows"])
    csv_text = mine.predict(api_name="/votes_csv")
    assert csv_text.splitlines()[0].startswith("id,when,model_a,model_b,winner") and len(csv_text.splitlines()) == 4


@pytest.mark.parametrize("call, words", [
    (("Q?", ["only-one"], "/arena"), "at least two different models in the pool, got 1"),
    (("Q?", ["same", " same "], "/arena"), "at least two different models in the pool, got 1"),
    (("", [{"model": "a"}, {"model": "b"}], "/compare"), "the prompt is empty"),
    (("Q?", [{"model": "a"}], "/compare"), "2 to 4 columns, got 1"),
    (("Q?", [{"model": "a", "temperature": 9}, {"model": "b"}], "/compare"), "temperature must be between 0 and 2"),
])
def test_bad_input_gets_a_clear_message(running, call, words):
    *args, api = call
    with pytest.raises(AppError, match=words):
        client(running[2]).predict(*args, api_name=api)


JSONL = '{"question": "Capital of France?", "answer": "Paris"}\n{"question": "Capital of Italy?", "answer": "Rome"}'


@pytest.mark.parametrize("kwargs, words", [
    ({"data": JSONL, "prompt_column": "prompt"}, "has no prompt column 'prompt'; its columns are question, answer"),
    ({"data": JSONL, "prompt_column": "question", "scorers": ["regex"], "regex": "(Par"}, "does not compile"),
    ({"data": "question,answer\n", "prompt_column": "question"}, "no rows"),
    ({"prompt_column": "question"}, "no prompts given"),
])
def test_bad_evaluations_are_refused_with_a_clear_message(running, kwargs, words):
    with pytest.raises(AppError, match=words):
        client(running[2]).predict(["m1"], **kwargs, api_name="/eval_start")


def test_evaluation_over_the_api_records_history_and_fails_only_the_missing_model(running):
    _, services, url = running
    c = client(url)
    started = c.predict(["m1", "missing/model"], data=JSONL, prompt_column="question", reference_column="answer",
                        scorers=["contains", "exact_match"], api_name="/eval_start")
    assert started["total"] == 4
    for _ in range(100):
        status = c.predict(api_name="/eval_status")
        if status["status"] != "running":
            break
        time.sleep(0.1)
    assert status == {**status, "status": "done", "done": 4, "failed": 2, "progress": 1.0}
    results = c.predict(started["run"], api_name="/eval_results")
    m1 = {s["scorer"]: s for s in results["summary"] if s["model"] == "m1"}
    assert m1["contains"]["mean"] == 0.5 and m1["exact_match"]["mean"] == 0.0 and m1["contains"]["n"] == 2
    assert [r["status"].startswith("failed: missing/model could not be loaded") for r in results["rows"]
            if r["model"] == "missing/model"] == [True, True]
    assert services.history.count(f"session:{c.session_hash}") == 2
    with pytest.raises(AppError, match="no evaluation run"):
        client(url).predict(started["run"], api_name="/eval_results")
    assert c.predict(api_name="/eval_stop")["status"] == "done"
