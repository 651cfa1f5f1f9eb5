"""The engine process's loop (engines/openvino_worker.py) on a fake pipeline: a failed step fails only the requests in
it, says why, and the pipeline is built afresh so the next requests run on a clean one."""

from __future__ import annotations

import importlib.util
import socket
from multiprocessing.connection import Connection

import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("openvino_genai") is None,
                                reason="openvino-genai is not installed")
SETTINGS = {"max_new_tokens": 4, "eos_ids": [2], "repetition_penalty": 1.0, "greedy": True, "temperature": 0.0,
            "top_p": 1.0, "top_k": 0, "seed": 0, "with_probs": False, "constraint": None}


class Handle:
    def __init__(self):
        self.stopped = False

    def can_read(self):
        return False

    def get_status(self):
        import openvino_genai as og

        return og.GenerationStatus.RUNNING

    def stop(self):
        self.stopped = True


class Pipeline:
    def __init__(self, fail: bool):
        self.fail, self.added = fail, []

    def add_request(self, rid, ids, config):
        self.added.append(rid)
        return Handle()

    def step(self):
        if self.fail:
            raise RuntimeError("the grammar matcher rejected a token")


def test_a_failed_step_fails_its_requests_and_rebuilds_the_pipeline():
    from engines.openvino_worker import Engine

    ours, theirs = socket.socketpair()
    app, engine_side = Connection(ours.detach()), Connection(theirs.detach())
    built = [Pipeline(fail=True), Pipeline(fail=False)]
    engine = Engine(engine_side, lambda: built.pop(0))
    for rid in (1, 2):
        engine.command(("add", rid, [5, 6, 7], SETTINGS))
    engine.step()
    assert app.recv() == ("failed", [1, 2], "the grammar matcher rejected a token")
    assert not built and not engine.handles  # built afresh, nothing left of the failed step
    engine.command(("add", 3, [5, 6], SETTINGS))
    engine.step()  # the new pipeline steps fine
    assert engine.pipe.added == [3] and list(engine.handles) == [3]
    assert engine.command(("stop", 3)) and not engine.handles
    assert not engine.command(("close",))


def test_settings_the_engine_refuses_fail_only_that_request():
    from engines.openvino_worker import Engine

    class Refusing(Pipeline):
        def add_request(self, rid, ids, config):
            raise RuntimeError("unsupported structured output")

    ours, theirs = socket.socketpair()
    app, engine_side = Connection(ours.detach()), Connection(theirs.detach())
    engine = Engine(engine_side, lambda: Refusing(fail=False))
    engine.command(("add", 9, [1], SETTINGS))
    assert app.recv() == ("refused", 9, "unsupported structured output") and not engine.handles
