"""Votes and evaluation results in SQLite: they persist across a reopen, stay per owner, and never duplicate."""

from __future__ import annotations

import csv
import io

import pytest

from errors import NotFound
from store.eval_runs import EvalStore
from store.votes import VoteStore


def test_votes_persist_across_a_reopen_and_stay_with_their_owner(tmp_path):
    store = VoteStore(tmp_path)
    store.add("browser:alice0001", "b1", "m1", "m2", "model_a", "2+2?", {"temperature": 0.7}, shared=True)
    store.add("browser:alice0001", "b2", "m2", "m1", "both_bad", "hi", {}, shared=False)
    store.add("browser:bob00001", "b3", "m1", "m3", "tie", "yo", {}, shared=False)
    store.close()
    again = VoteStore(tmp_path)
    alice = again.list("browser:alice0001")
    assert [(v.battle, v.winner, v.fastchat_winner) for v in alice] == [
        ("b1", "model_a", "model_a"), ("b2", "both_bad", "tie (bothbad)")]
    assert alice[0].settings == {"temperature": 0.7} and alice[0].prompt == "2+2?"
    assert [v.battle for v in again.list("browser:bob00001")] == ["b3"]
    assert [v.battle for v in again.list(shared=True)] == ["b1"], "only votes cast with sharing ticked are shared"
    rows = list(csv.DictReader(io.StringIO(again.csv(alice))))
    assert [r["winner"] for r in rows] == ["model_a", "both_bad"] and rows[0]["model_b"] == "m2"


def test_a_battle_takes_one_vote(tmp_path):
    store = VoteStore(tmp_path)
    first = store.add("browser:alice0001", "b1", "m1", "m2", "model_a", "p", {}, shared=False)
    second = store.add("browser:alice0001", "b1", "m1", "m2", "model_b", "p", {}, shared=False)
    assert second == first and len(store.list("browser:alice0001")) == 1
    with pytest.raises(ValueError, match="winner must be one of"):
        store.add("browser:alice0001", "b2", "m1", "m2", "draw", "p", {}, shared=False)


def test_eval_results_are_keyed_by_row_and_model(tmp_path):
    store = EvalStore(tmp_path)
    run = store.create("browser:alice0001", {"models": ["m1", "m2"]}, [("a", "A"), ("b", None), ("c", "C")])
    assert store.get(run).total == 6
    assert store.add_result(run, 1, "m1", True, "out", {"contains": 1.0}, {"seed": 3})
    assert not store.add_result(run, 1, "m1", True, "other", {}, {}), "a finished row is never overwritten"
    assert [r for r, _, _ in store.pending(run, "m1")] == [0, 2]
    assert [r for r, _, _ in store.pending(run, "m2")] == [0, 1, 2]
    assert store.counts(run) == (1, 0)
    assert store.results(run)[0].output == "out" and store.results(run)[0].reference is None
    with pytest.raises(NotFound, match="no evaluation run"):
        store.get(run, "browser:bob00001")
