"""Evaluation runs, per owner: the run's settings, its prompts, and each finished (row, model) result.

A result row is written in one transaction as soon as its generation ends and is keyed by (run, row, model), so a
run killed at any moment resumes with exactly the rows still missing: none is generated twice, none is lost.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from errors import NotFound
from identity import require_owner
from store.database import Database

STATUSES = ("running", "stopped", "done", "failed")
EVAL_MIGRATIONS = [
    """
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        spec TEXT NOT NULL,               -- JSON: models, template, sampling, scorers, dataset label
        status TEXT NOT NULL,
        total INTEGER NOT NULL,           -- rows x models
        error TEXT NOT NULL DEFAULT '',
        created REAL NOT NULL,
        updated REAL NOT NULL
    );
    CREATE INDEX runs_owner ON runs(owner, created);
    CREATE TABLE items (
        run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        row INTEGER NOT NULL,
        prompt TEXT NOT NULL,
        reference TEXT,                   -- NULL when the dataset gave none
        PRIMARY KEY (run_id, row)
    );
    CREATE TABLE results (
        run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        row INTEGER NOT NULL,
        model TEXT NOT NULL,
        ok INTEGER NOT NULL,
        output TEXT NOT NULL,
        scores TEXT NOT NULL,             -- JSON: scorer -> value in [0, 1]
        stats TEXT NOT NULL,              -- JSON: tokens, timings, seed
        error TEXT NOT NULL DEFAULT '',
        history_id INTEGER,               -- NULL until the output is recorded in History
        created REAL NOT NULL,
        PRIMARY KEY (run_id, row, model)
    );
    """,
]


@dataclass(frozen=True)
class Run:
    id: str
    owner: str
    spec: dict
    status: str
    total: int
    error: str
    created: float
    updated: float


@dataclass(frozen=True)
class Result:
    row: int
    model: str
    ok: bool
    output: str
    scores: dict
    stats: dict
    error: str
    prompt: str
    reference: str | None


class EvalStore:
    """Runs in `<folder>/evals.db` (SQLite, WAL)."""

    def __init__(self, folder: Path):
        self.db = Database(Path(folder) / "evals.db", EVAL_MIGRATIONS)

    @classmethod
    def from_config(cls, config) -> EvalStore:
        return cls(Path(config.data_dir) / "compare")

    def close(self) -> None:
        self.db.close()

    def create(self, owner: str, spec: dict, items: list[tuple[str, str | None]]) -> str:
        """A new run in status 'running' with its prompts (and references); returns its id."""
        require_owner(owner)
        run_id, now = uuid.uuid4().hex[:12], time.time()
        with self.db.transaction() as conn:
            conn.execute("INSERT INTO runs (id, owner, spec, status, total, created, updated) VALUES (?,?,?,?,?,?,?)",
                         (run_id, owner, json.dumps(spec), "running", len(items) * len(spec["models"]), now, now))
            conn.executemany("INSERT INTO items (run_id, row, prompt, reference) VALUES (?,?,?,?)",
                             [(run_id, i, p, r) for i, (p, r) in enumerate(items)])
        return run_id

    def get(self, run_id: str, owner: str | None = None) -> Run:
        """The run; NotFound when there is none (or, with `owner`, when it is someone else's)."""
        row = self.db.read().execute(f"SELECT {_RUN} FROM runs WHERE id=?", (str(run_id),)).fetchone()
        if row is None or (owner is not None and row[1] != owner):
            raise NotFound(f"no evaluation run {run_id!r} of yours; eval_status with no id lists your runs")
        return _run(row)

    def runs(self, owner: str, limit: int = 20) -> list[Run]:
        rows = self.db.read().execute(f"SELECT {_RUN} FROM runs WHERE owner=? ORDER BY created DESC LIMIT ?",
                                      (require_owner(owner), limit)).fetchall()
        return [_run(r) for r in rows]

    def with_status(self, status: str) -> list[Run]:
        return [_run(r) for r in self.db.read().execute(f"SELECT {_RUN} FROM runs WHERE status=?", (status,))]

    def set_status(self, run_id: str, status: str, error: str = "") -> None:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        with self.db.transaction() as conn:
            conn.execute("UPDATE runs SET status=?, error=?, updated=? WHERE id=?",
                         (status, error, time.time(), run_id))

    def pending(self, run_id: str, model: str) -> list[tuple[int, str, str | None]]:
        """(row, prompt, reference) of the rows `model` has no result for yet, in row order."""
        return self.db.read().execute(
            "SELECT i.row, i.prompt, i.reference FROM items i WHERE i.run_id=? AND NOT EXISTS (SELECT 1 FROM results r "
            "WHERE r.run_id=i.run_id AND r.row=i.row AND r.model=?) ORDER BY i.row", (run_id, model)).fetchall()

    def add_result(self, run_id: str, row: int, model: str, ok: bool, output: str, scores: dict, stats: dict,
                   error: str = "") -> bool:
        """Keep one finished row; False when that (row, model) was already there (nothing is overwritten)."""
        with self.db.transaction() as conn:
            cur = conn.execute("INSERT OR IGNORE INTO results (run_id, row, model, ok, output, scores, stats, error, "
                               "created) VALUES (?,?,?,?,?,?,?,?,?)",
                               (run_id, row, model, int(ok), output, json.dumps(scores), json.dumps(stats, default=str),
                                error, time.time()))
            conn.execute("UPDATE runs SET updated=? WHERE id=?", (time.time(), run_id))
            return cur.rowcount == 1

    def unrecorded(self, run_id: str) -> list[tuple[int, str]]:
        """(row, model) of successful results not yet copied into History (a kill can fall between the two)."""
        return self.db.read().execute("SELECT row, model FROM results WHERE run_id=? AND ok=1 AND history_id IS NULL "
                                      "ORDER BY row, model", (run_id,)).fetchall()

    def set_history_id(self, run_id: str, row: int, model: str, history_id: int) -> None:
        with self.db.transaction() as conn:
            conn.execute("UPDATE results SET history_id=? WHERE run_id=? AND row=? AND model=?",
                         (history_id, run_id, row, model))

    def counts(self, run_id: str) -> tuple[int, int]:
        """(finished, failed) results of the run."""
        done, failed = self.db.read().execute("SELECT count(*), coalesce(sum(1 - ok), 0) FROM results WHERE run_id=?",
                                              (run_id,)).fetchone()
        return int(done), int(failed)

    def results(self, run_id: str, row: int | None = None, model: str | None = None) -> list[Result]:
        """The run's results in row order (or just the one of `row` and `model`)."""
        where, args = "r.run_id=?", [run_id]
        if row is not None and model is not None:
            where, args = where + " AND r.row=? AND r.model=?", [run_id, row, model]
        rows = self.db.read().execute(
            "SELECT r.row, r.model, r.ok, r.output, r.scores, r.stats, r.error, i.prompt, i.reference FROM results r "
            f"JOIN items i ON i.run_id=r.run_id AND i.row=r.row WHERE {where} ORDER BY r.row, r.model",
            args).fetchall()
        return [Result(row, model, bool(ok), out, json.loads(sc), json.loads(st), err, prompt, ref)
                for row, model, ok, out, sc, st, err, prompt, ref in rows]


_RUN = "id, owner, spec, status, total, error, created, updated"


def _run(row: tuple) -> Run:
    values = list(row)
    values[2] = json.loads(values[2])
    return Run(*values)
