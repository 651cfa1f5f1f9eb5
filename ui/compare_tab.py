"""Compare tab: models side by side, a blind arena with its leaderboard, and evaluation runs over datasets.

`build` lays out the three parts (ui/compare_side.py, ui/compare_arena.py, ui/compare_eval.py), wires them, and
registers the stable API endpoints: compare, arena, vote, leaderboard, votes_csv, eval_start, eval_status,
eval_results, eval_stop. The UI's own events are private; the endpoints take typed, named parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from ui import compare_arena, compare_eval, compare_side
from ui.common import TEXT_QUEUE, bind
from ui.compare_common import CompareDeps


@dataclass
class CompareTab:
    """Parts other tabs may use."""

    side: compare_side.SideUI
    arena: compare_arena.ArenaUI
    evaluation: compare_eval.EvalUI


def build(deps: CompareDeps) -> CompareTab:
    """Lay out the Compare tab inside the caller's open gr.Tab, then wire its events and API."""
    owner = deps.owner if deps.owner is not None else gr.State("")
    datasets_state = deps.datasets_state
    with gr.Tabs():
        with gr.Tab("Side by side", id="compare-side"):
            side = compare_side.layout(deps, owner)
        with gr.Tab("Arena", id="compare-arena"):
            arena = compare_arena.layout(deps, owner)
        with gr.Tab("Evaluation", id="compare-eval"):
            evaluation = compare_eval.layout(deps, owner)
    compare_side.wire(side, deps)
    compare_arena.wire(arena, deps)
    compare_eval.wire(evaluation, deps, datasets_state)
    register_api(deps)
    return CompareTab(side, arena, evaluation)


def register_api(deps: CompareDeps) -> None:
    """Stable endpoints for gradio_client (see the README's Compare section)."""
    generating = {"concurrency_id": TEXT_QUEUE, "concurrency_limit": deps.slots}
    gr.api(bind(compare_side.compare_api, deps=deps), api_name="compare", **generating)
    gr.api(bind(compare_arena.arena_api, deps=deps), api_name="arena", **generating)
    gr.api(bind(compare_arena.vote_api, deps=deps), api_name="vote")
    gr.api(bind(compare_arena.leaderboard_api, deps=deps), api_name="leaderboard")
    gr.api(bind(compare_arena.votes_csv_api, deps=deps), api_name="votes_csv")
    gr.api(bind(compare_eval.eval_start_api, deps=deps), api_name="eval_start")
    gr.api(bind(compare_eval.eval_status_api, deps=deps), api_name="eval_status")
    gr.api(bind(compare_eval.eval_results_api, deps=deps), api_name="eval_results")
    gr.api(bind(compare_eval.eval_stop_api, deps=deps), api_name="eval_stop")
