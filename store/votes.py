"""Arena votes, per owner: which two models answered which prompt, with what settings, and which one won.

`share` is the voter's consent: the shared leaderboard counts only votes cast with it ticked.
"""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from identity import require_owner
from store.database import Database

VOTES = ("model_a", "model_b", "tie", "both_bad")  # what a person can answer; both_bad counts as a tie
VOTE_MIGRATIONS = [
    """
    CREATE TABLE votes (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        owner TEXT NOT NULL,
        battle TEXT NOT NULL UNIQUE,     -- one vote per battle, whatever retries arrive
        model_a TEXT NOT NULL,
        model_b TEXT NOT NULL,
        winner TEXT NOT NULL,
        prompt TEXT NOT NULL,
        settings TEXT NOT NULL,          -- JSON: sampling parameters, seeds
        shared INTEGER NOT NULL,
        created REAL NOT NULL
    );
    CREATE INDEX votes_owner ON votes(owner, created);
    CREATE INDEX votes_shared ON votes(shared, created);
    """,
]
CSV_FIELDS = ("id", "when", "model_a", "model_b", "winner", "prompt", "settings", "shared")


@dataclass(frozen=True)
class Vote:
    id: int
    owner: str
    battle: str
    model_a: str
    model_b: str
    winner: str
    prompt: str
    settings: dict
    shared: bool
    created: float

    @property
    def when(self) -> str:
        return datetime.fromtimestamp(self.created, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

    @property
    def fastchat_winner(self) -> str:
        """The vote in FastChat's words (compare.leaderboard.WINNERS)."""
        return "tie (bothbad)" if self.winner == "both_bad" else self.winner


class VoteStore:
    """Votes in `<folder>/votes.db` (SQLite, WAL)."""

    def __init__(self, folder: Path):
        self.db = Database(Path(folder) / "votes.db", VOTE_MIGRATIONS)

    @classmethod
    def from_config(cls, config) -> VoteStore:
        return cls(Path(config.data_dir) / "compare")

    def close(self) -> None:
        self.db.close()

    def add(self, owner: str, battle: str, model_a: str, model_b: str, winner: str, prompt: str, settings: dict,
            shared: bool) -> Vote:
        """Store one vote; a second vote on the same battle returns the first one unchanged."""
        require_owner(owner)
        if winner not in VOTES:
            raise ValueError(f"winner must be one of {VOTES}, got {winner!r}")
        with self.db.transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO votes (owner, battle, model_a, model_b, winner, prompt, settings, "
                         "shared, created) VALUES (?,?,?,?,?,?,?,?,?)",
                         (owner, battle, model_a, model_b, winner, prompt, json.dumps(settings, default=str),
                          int(bool(shared)), time.time()))
            row = conn.execute(f"SELECT {_COLUMNS} FROM votes WHERE battle=?", (battle,)).fetchone()
        return _vote(row)

    def list(self, owner: str | None = None, shared: bool = False) -> list[Vote]:
        """An owner's votes, or (owner None, shared) everyone's shared votes; oldest first (Elo plays them in order)."""
        if owner is not None:
            sql, args = f"SELECT {_COLUMNS} FROM votes WHERE owner=? ORDER BY created, id", (require_owner(owner),)
        elif shared:
            sql, args = f"SELECT {_COLUMNS} FROM votes WHERE shared=1 ORDER BY created, id", ()
        else:
            raise ValueError("name an owner, or ask for the shared votes")
        return [_vote(r) for r in self.db.read().execute(sql, args).fetchall()]

    def csv(self, votes: list[Vote]) -> str:
        """The votes as CSV text (one header row)."""
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(CSV_FIELDS)
        for v in votes:
            writer.writerow([v.id, v.when, v.model_a, v.model_b, v.winner, v.prompt, json.dumps(v.settings),
                             int(v.shared)])
        return out.getvalue()


_COLUMNS = "id, owner, battle, model_a, model_b, winner, prompt, settings, shared, created"


def _vote(row: tuple) -> Vote:
    values = list(row)
    values[7], values[8] = json.loads(values[7]), bool(values[8])
    return Vote(*values)
