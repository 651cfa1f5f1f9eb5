"""Arena leaderboards: online Elo and a Bradley-Terry fit, each with bootstrap confidence intervals.

Both follow the method LMSYS published for Chatbot Arena (FastChat's `compute_elo`, `compute_mle_elo` and
`get_bootstrap_result`): online Elo with K=4, base 10, scale 400, starting at 1000, ties (and "both bad") counting a
half win each; the Bradley-Terry scores are the maximum-likelihood fit of P(a beats b) = 1 / (1 + 10^((Rb-Ra)/400)),
where a win counts twice and a tie once for each side. FastChat fits that with an unpenalised logistic regression;
its solver starts at zero and every feature row sums to zero, so it lands on the scores that average 1000. Here the
same optimum is found by Newton's method restricted to that subspace (exact to 1e-9, and fast enough to bootstrap).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

WINNERS = ("model_a", "model_b", "tie", "tie (bothbad)")  # FastChat's names for the four votes
K, BASE, SCALE, INIT = 4.0, 10.0, 400.0, 1000.0


@dataclass(frozen=True)
class Battle:
    """One vote: which of two models won (a `WINNERS` value)."""

    model_a: str
    model_b: str
    winner: str


@dataclass(frozen=True)
class Standing:
    """One model's place on the leaderboard; `*_low`/`*_high` bound the 95% bootstrap interval."""

    model: str
    battles: int
    wins: int
    ties: int
    elo: float
    elo_low: float
    elo_high: float
    bt: float
    bt_low: float
    bt_high: float


def _score_a(winner: str) -> float:
    if winner == "model_a":
        return 1.0
    if winner == "model_b":
        return 0.0
    if winner in WINNERS:
        return 0.5
    raise ValueError(f"winner must be one of {WINNERS}, got {winner!r}")


def online_elo(battles: Sequence[Battle], models: Sequence[str]) -> np.ndarray:
    """Elo ratings after playing `battles` in order, indexed like `models`."""
    index = {m: i for i, m in enumerate(models)}
    rating = np.full(len(models), INIT)
    for b in battles:
        a, o = index[b.model_a], index[b.model_b]
        ea = 1 / (1 + BASE ** ((rating[o] - rating[a]) / SCALE))
        eb = 1 / (1 + BASE ** ((rating[a] - rating[o]) / SCALE))
        sa = _score_a(b.winner)
        rating[a] += K * (sa - ea)
        rating[o] += K * (1 - sa - eb)
    return rating


def win_matrix(battles: Sequence[Battle], models: Sequence[str]) -> np.ndarray:
    """W[i, j]: weighted wins of model i over j (a win counts 2, a tie 1 for each side), as FastChat weighs them."""
    index = {m: i for i, m in enumerate(models)}
    a = np.array([index[b.model_a] for b in battles], dtype=np.int64)
    o = np.array([index[b.model_b] for b in battles], dtype=np.int64)
    sa = np.array([_score_a(b.winner) for b in battles])
    w = np.zeros((len(models), len(models)))
    np.add.at(w, (a, o), 2 * sa)
    np.add.at(w, (o, a), 2 * (1 - sa))
    return w


def strongly_connected(w: np.ndarray) -> bool:
    """True when every model has beaten (or tied) its way round to every other: then the fit has a finite optimum."""
    from scipy.sparse.csgraph import connected_components

    n, _ = connected_components(w > 0, directed=True, connection="strong")
    return n == 1


def bradley_terry(w: np.ndarray, ridge: float = 0.0, tol: float = 1e-12, max_iter: int = 100) -> np.ndarray:
    """Maximum-likelihood Bradley-Terry ratings (mean 1000) from a weighted win matrix.

    Args:
        w: `win_matrix` output.
        ridge: an L2 penalty on the log-strengths; needed only when a model won (or lost) all its battles, where
            the unpenalised optimum lies at infinity.
        tol: stop when the largest Newton step is below this (in log-strength units).

    Returns:
        Ratings on the Elo scale, one per row of `w`.
    """
    p = len(w)
    if p < 2:
        return np.full(p, INIT)
    c = math.log(BASE)
    n = w + w.T  # comparisons between each pair, in weighted units
    theta = np.zeros(p)
    center = np.eye(p) - 1.0 / p  # projects onto the sum-zero subspace the regression stays in
    for _ in range(max_iter):
        prob = 1 / (1 + np.exp(-c * (theta[:, None] - theta[None, :])))  # P(i beats j)
        grad = -c * (w - n * prob).sum(axis=1) + ridge * theta
        curv = c * c * n * prob * (1 - prob)
        hess = np.diag(curv.sum(axis=1)) - curv + ridge * np.eye(p)
        step = center @ np.linalg.lstsq(center @ hess @ center, -center @ grad, rcond=None)[0]
        theta += step
        if np.abs(step).max() < tol:
            break
    return INIT + SCALE * theta


def fit(battles: Sequence[Battle], models: Sequence[str]) -> tuple[np.ndarray, np.ndarray, bool]:
    """(Elo, Bradley-Terry, exact): `exact` is False when a small ridge had to keep undefeated models finite."""
    w = win_matrix(battles, models)
    exact = strongly_connected(w)
    return online_elo(battles, models), bradley_terry(w, ridge=0.0 if exact else 1e-2), exact


def bootstrap(battles: Sequence[Battle], models: Sequence[str], rounds: int = 200,
              seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Elo and Bradley-Terry ratings of `rounds` resamples of the battles (rows: rounds, columns: models).

    Each round draws len(battles) battles with replacement, in the drawn order (FastChat's
    `battles.sample(frac=1.0, replace=True)`), so the online Elo sees a shuffled history too.
    """
    rng = np.random.default_rng(seed)
    elo, bt = np.empty((rounds, len(models))), np.empty((rounds, len(models)))
    for r in range(rounds):
        sample = [battles[i] for i in rng.integers(0, len(battles), len(battles))]
        w = win_matrix(sample, models)
        elo[r] = online_elo(sample, models)
        bt[r] = bradley_terry(w, ridge=0.0 if strongly_connected(w) else 1e-2)
    return elo, bt


def leaderboard(battles: Sequence[Battle], rounds: int = 200, seed: int = 0) -> tuple[list[Standing], bool]:
    """Every model in `battles`, best Bradley-Terry rating first, and whether the fit was exact."""
    models = sorted({m for b in battles for m in (b.model_a, b.model_b)})
    if not battles:
        return [], True
    elo, bt, exact = fit(battles, models)
    boot_elo, boot_bt = bootstrap(battles, models, rounds, seed) if rounds else (elo[None], bt[None])
    lo_e, hi_e = np.quantile(boot_elo, [0.025, 0.975], axis=0)
    lo_b, hi_b = np.quantile(boot_bt, [0.025, 0.975], axis=0)
    rows = []
    for i, m in enumerate(models):
        mine = [b for b in battles if m in (b.model_a, b.model_b)]
        wins = sum((b.winner, m) in {("model_a", b.model_a), ("model_b", b.model_b)} for b in mine)
        ties = sum(b.winner in WINNERS[2:] for b in mine)
        rows.append(Standing(m, len(mine), wins, ties, float(elo[i]), float(lo_e[i]), float(hi_e[i]),
                             float(bt[i]), float(lo_b[i]), float(hi_b[i])))
    return sorted(rows, key=lambda s: -s.bt), exact
