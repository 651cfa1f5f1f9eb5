"""Compare tab, blind arena: two anonymous models answer, the person votes, the names appear; and the leaderboard.

The pairing stays in `compare.arena.Arena` on the server; what this module sends before a vote (UI outputs, API
responses, messages) holds only the battle id and the two answers. Answers go to History only after the vote,
since History names the model.
"""

from __future__ import annotations

import logging
import tempfile
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from compare.arena import Battle
from compare.columns import ColumnRequest, ColumnState, stream_columns
from compare.leaderboard import Battle as Match
from compare.leaderboard import leaderboard
from errors import UserError
from ui.chat_tab import Asker, asker_of, record
from ui.common import TEXT_QUEUE, bind
from ui.compare_common import CompareDeps, column_params, model_dropdown

logger = logging.getLogger(__name__)
SIDES = ("A", "B")
WINNER_WORDS = {"a": "model_a", "model_a": "model_a", "b": "model_b", "model_b": "model_b", "tie": "tie",
                "both_bad": "both_bad", "both bad": "both_bad"}
SCOPES = ("mine", "shared")
BOARD_COLUMNS = ["rank", "model", "bt", "bt_low", "bt_high", "elo", "elo_low", "elo_high", "battles", "wins", "ties"]


def battle_stream(prompt: str, pool: list[str], settings: dict[str, Any], asker: Asker, deps: CompareDeps
                  ) -> Iterator[tuple[str, list[str]]]:
    """Draw two models from `pool` and stream both answers: yields (battle id, [answer A, answer B])."""
    prompt = (prompt or "").strip()
    if not prompt:
        raise UserError("the prompt is empty: type a question for the two anonymous models")
    params = column_params(deps, settings)
    battle = deps.arena.draw(asker.owner, pool or [])
    battle.prompt = prompt
    messages = ({"role": "user", "content": prompt},)
    requests = [ColumnRequest(m, params, messages=messages) for m in (battle.model_a, battle.model_b)]
    states: list[ColumnState] = []
    with deps.registry.generation(asker.session, on_timeout=gr.Warning, rate_key=asker.rate) as stop:
        for states in stream_columns(deps.engine, requests, stop, asker.owner):
            yield battle.id, [s.text for s in states]
    failed = [side for side, s in zip(SIDES, states, strict=True) if s.error]
    if failed:
        deps.arena.discard(battle.id)
        for side, s in zip(SIDES, states, strict=True):  # the reason names the model: it stays in the log
            if s.error:
                logger.warning("arena battle %s: model %s failed: %s", battle.id, side, s.error)
        raise UserError(f"model {' and '.join(failed)} could not answer, so this battle is void (the server log "
                        f"has the reason under battle {battle.id}); start a new battle")
    battle.settings = {**params.as_dict(), "seed_a": states[0].stats.get("seed"),
                       "seed_b": states[1].stats.get("seed")}
    battle.answers = [(s.text, s.stats) for s in states]
    battle.answered = True


def cast_vote(battle_id: str, winner: str, share: bool, asker: Asker, deps: CompareDeps) -> dict[str, Any]:
    """Store the vote and reveal the names (and only now record both answers in History)."""
    choice = WINNER_WORDS.get(str(winner or "").strip().lower())
    if choice is None:
        raise UserError(f"winner must be A, B, tie or both_bad, got {winner!r}")
    battle: Battle = deps.arena.settle(asker.owner, battle_id)
    vote = deps.votes.add(asker.owner, battle.id, battle.model_a, battle.model_b, choice, battle.prompt,
                          battle.settings, share)
    params = column_params(deps, {k: v for k, v in battle.settings.items() if not k.startswith("seed_")})
    for model, (text, stats) in zip((battle.model_a, battle.model_b), battle.answers, strict=True):
        record(deps, asker, "chat", battle.prompt, text, model, params, {**stats, "arena_battle": battle.id})
    return {"battle": battle.id, "winner": vote.winner, "model_a": vote.model_a, "model_b": vote.model_b,
            "shared": vote.shared}


def standings(scope: str, owner: str, deps: CompareDeps, rounds: int = 200) -> dict[str, Any]:
    """The leaderboard of the owner's votes ('mine') or of everyone's shared votes ('shared')."""
    if scope not in SCOPES:
        raise UserError(f"scope must be one of {SCOPES}, got {scope!r}")
    if not 0 <= int(rounds) <= 2000:
        raise UserError(f"rounds must be between 0 and 2000, got {rounds}")
    votes = deps.votes.list(owner) if scope == "mine" else deps.votes.list(shared=True)
    rows, exact = leaderboard([Match(v.model_a, v.model_b, v.fastchat_winner) for v in votes], rounds=int(rounds))
    table = [{"rank": i + 1, **{k: round(v, 2) if isinstance(v, float) else v for k, v in asdict(r).items()}}
             for i, r in enumerate(rows)]
    return {"scope": scope, "votes": len(votes), "exact": exact, "rows": table}


# -- API endpoints (gr.api: stable names, typed, only the first parameters required) -------------------------
def arena_api(prompt: str, pool: list[str], temperature: float = 0.7, max_new_tokens: int = 128,
              request: gr.Request = None, *, deps: CompareDeps) -> dict:
    """Start a blind battle: {"battle": id, "answer_a", "answer_b"}; the names come back from /vote."""
    stream = battle_stream(prompt, pool, {"temperature": temperature, "max_new_tokens": max_new_tokens},
                           asker_of(request, ""), deps)
    battle_id, answers = deque(stream, maxlen=1)[0]
    return {"battle": battle_id, "answer_a": answers[0], "answer_b": answers[1]}


def vote_api(battle: str, winner: str, share: bool = False, request: gr.Request = None, *,
             deps: CompareDeps) -> dict:
    """Vote A, B, tie or both_bad on a battle; returns the two models' names."""
    return cast_vote(battle, winner, share, asker_of(request, ""), deps)


def leaderboard_api(scope: str = "mine", rounds: int = 200, request: gr.Request = None, *,
                    deps: CompareDeps) -> dict:
    """Elo and Bradley-Terry ratings with 95% bootstrap intervals, of your votes or everyone's shared ones."""
    return standings(scope, asker_of(request, "").owner, deps, rounds)


def votes_csv_api(scope: str = "mine", request: gr.Request = None, *, deps: CompareDeps) -> str:
    """The votes behind a leaderboard as CSV text."""
    owner = asker_of(request, "").owner
    return deps.votes.csv(deps.votes.list(owner) if scope == "mine" else deps.votes.list(shared=True))


# -- UI -----------------------------------------------------------------------------------------------------
@dataclass
class ArenaUI:
    pool: gr.Dropdown
    temperature: gr.Slider
    max_tokens: gr.Slider
    prompt: gr.Textbox
    go: gr.Button
    chats: list[gr.Chatbot]
    votes: dict[str, gr.Button]
    share: gr.Checkbox
    reveal: gr.Markdown
    battle: gr.State
    scope: gr.Radio
    refresh: gr.Button
    board: gr.Dataframe
    note: gr.Markdown
    export: gr.Button
    file: gr.File
    owner: gr.State


def battle_ui(prompt: str, pool: list[str], temperature: float, max_new_tokens: float, owner: str,
              request: gr.Request = None, *, deps: CompareDeps) -> Iterator[list]:
    """The UI's battle: both answers stream into the anonymous columns."""
    asker = asker_of(request, owner)
    buttons = [gr.Button(interactive=False)] * 4
    for battle_id, answers in battle_stream(prompt, pool, {"temperature": temperature,
                                                           "max_new_tokens": max_new_tokens}, asker, deps):
        chats = [[{"role": "user", "content": prompt}, {"role": "assistant", "content": a}] for a in answers]
        yield [*chats, battle_id, "", *buttons]
    yield [gr.skip(), gr.skip(), gr.skip(), "Which answer is better? Vote to see the models' names.",
           *[gr.Button(interactive=True)] * 4]


def vote_ui(battle_id: str, share: bool, owner: str, request: gr.Request = None, *, deps: CompareDeps,
            winner: str) -> list:
    result = cast_vote(battle_id, winner, share, asker_of(request, owner), deps)
    words = {"model_a": "you preferred A", "model_b": "you preferred B", "tie": "a tie", "both_bad": "both bad"}
    text = (f"**A** was `{result['model_a']}` · **B** was `{result['model_b']}` — {words[result['winner']]}"
            f"{' (shared)' if result['shared'] else ''}.")
    return [text, "", *[gr.Button(interactive=False)] * 4]


def board_ui(scope: str, owner: str, request: gr.Request = None, *, deps: CompareDeps) -> tuple:
    data = standings(scope, asker_of(request, owner).owner, deps)
    frame = pd.DataFrame(data["rows"], columns=BOARD_COLUMNS)
    votes = f"{data['votes']} vote" + ("" if data["votes"] == 1 else "s")
    note = (f"{votes} ({scope}). Bradley-Terry (bt) and online Elo on the Elo scale, with 95% bootstrap "
            f"intervals." + ("" if data["exact"] else " Some model won or lost every battle: its rating "
                                       "is held finite by a small penalty and is only a bound."))
    return frame, note


def export_ui(scope: str, owner: str, request: gr.Request = None, *, deps: CompareDeps) -> gr.File:
    data = standings(scope, asker_of(request, owner).owner, deps)
    folder = Path(tempfile.mkdtemp(prefix="leaderboard-"))
    path = folder / f"leaderboard-{scope}.csv"
    pd.DataFrame(data["rows"], columns=BOARD_COLUMNS).to_csv(path, index=False)
    return gr.File(value=str(path), visible=True)


def layout(deps: CompareDeps, owner: gr.State) -> ArenaUI:
    gr.Markdown("Two anonymous models from your pool answer the same prompt. Vote, and their names appear.")
    with gr.Row():
        pool = model_dropdown(deps.choices, [], "Pool (at least two models)", multiselect=True,
                              elem_id="arena-pool")
        temperature = gr.Slider(0, 2, value=0.7, step=0.05, label="Temperature", scale=0)
        max_tokens = gr.Slider(1, deps.max_new_tokens, value=min(128, deps.max_new_tokens), step=1,
                               label="Max new tokens", scale=0)
    with gr.Row():
        prompt = gr.Textbox(label="Prompt", lines=2, scale=5, elem_id="arena-prompt")
        go = gr.Button("Battle", variant="primary", scale=1, elem_id="arena-go")
    with gr.Row():
        chats = [gr.Chatbot(label=f"Model {s}", height=320, elem_id=f"arena-chat-{s.lower()}") for s in SIDES]
    with gr.Row():
        votes = {w: gr.Button(label, interactive=False, elem_id=f"arena-vote-{w}") for w, label in
                 (("model_a", "A is better"), ("model_b", "B is better"), ("tie", "Tie"),
                  ("both_bad", "Both bad"))}
    share = gr.Checkbox(False, label="Share this vote (count it in the shared leaderboard, without who cast it)")
    reveal = gr.Markdown(elem_id="arena-reveal")
    with gr.Accordion("Leaderboard", open=True):
        with gr.Row():
            scope = gr.Radio(list(SCOPES), value="mine", label="Votes", scale=2)
            refresh = gr.Button("Refresh", scale=1)
            export = gr.Button("Export CSV", scale=1)
        board = gr.Dataframe(pd.DataFrame(columns=BOARD_COLUMNS), interactive=False, elem_id="arena-board")
        note = gr.Markdown()
        file = gr.File(label="Leaderboard CSV", visible=False, interactive=False)
    return ArenaUI(pool, temperature, max_tokens, prompt, go, chats, votes, share, reveal, gr.State(""), scope,
                   refresh, board, note, export, file, owner)


def wire(ui: ArenaUI, deps: CompareDeps) -> None:
    private = {"api_visibility": "private"}
    buttons = list(ui.votes.values())
    ui.go.click(bind(battle_ui, deps=deps), [ui.prompt, ui.pool, ui.temperature, ui.max_tokens, ui.owner],
                [*ui.chats, ui.battle, ui.reveal, *buttons], concurrency_id=TEXT_QUEUE,
                concurrency_limit=deps.slots, **private)
    board = [ui.board, ui.note]
    for winner, button in ui.votes.items():
        button.click(bind(vote_ui, deps=deps, winner=winner), [ui.battle, ui.share, ui.owner],
                     [ui.reveal, ui.battle, *buttons], **private).then(
            bind(board_ui, deps=deps), [ui.scope, ui.owner], board, **private)
    gr.on([ui.refresh.click, ui.scope.change, ui.owner.change], bind(board_ui, deps=deps),
          [ui.scope, ui.owner], board, **private)  # the owner is set at page load
    ui.export.click(bind(export_ui, deps=deps), [ui.scope, ui.owner], ui.file, **private)
