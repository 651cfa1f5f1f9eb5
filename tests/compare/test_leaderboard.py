"""Leaderboard math against FastChat's published code (copied below, pandas + scikit-learn) on fixed votes."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pandas as pd
import pytest

from compare.leaderboard import Battle, bootstrap, fit, leaderboard

MODELS = ["alpha", "beta", "gamma", "delta"]


def fixed_votes() -> list[Battle]:
    """400 votes from a seeded draw; every model wins, loses and ties as both A and B (FastChat's pivot tables
    turn a pair missing from one of them into NaN and drop it, so the reference is only defined on such data)."""
    rng = np.random.default_rng(7)
    strength = {"alpha": 1.2, "beta": 0.5, "gamma": 0.0, "delta": -0.4}
    votes = []
    for _ in range(400):
        a, b = rng.choice(MODELS, 2, replace=False)
        u = rng.random()
        p = 1 / (1 + math.exp(strength[b] - strength[a]))
        winner = "tie" if u < 0.1 else "tie (bothbad)" if u < 0.15 else "model_a" if u < 0.15 + 0.85 * p \
            else "model_b"
        votes.append(Battle(str(a), str(b), winner))
    return votes


# --- FastChat, fastchat/serve/monitor/elo_analysis.py (Apache-2.0), unchanged but for the solver's tolerance ---
def compute_elo(battles, K=4, SCALE=400, BASE=10, INIT_RATING=1000):
    rating = defaultdict(lambda: INIT_RATING)
    for _rd, model_a, model_b, winner in battles[["model_a", "model_b", "winner"]].itertuples():
        ra, rb = rating[model_a], rating[model_b]
        ea = 1 / (1 + BASE ** ((rb - ra) / SCALE))
        eb = 1 / (1 + BASE ** ((ra - rb) / SCALE))
        if winner == "model_a":
            sa = 1
        elif winner == "model_b":
            sa = 0
        elif winner == "tie" or winner == "tie (bothbad)":
            sa = 0.5
        else:
            raise Exception(f"unexpected vote {winner}")
        rating[model_a] += K * (sa - ea)
        rating[model_b] += K * (1 - sa - eb)
    return rating


def compute_mle_elo(df, SCALE=400, BASE=10, INIT_RATING=1000):
    from sklearn.linear_model import LogisticRegression

    ptbl_a_win = pd.pivot_table(df[df["winner"] == "model_a"], index="model_a", columns="model_b", aggfunc="size",
                                fill_value=0)
    ptbl_tie = pd.pivot_table(df[df["winner"].isin(["tie", "tie (bothbad)"])], index="model_a", columns="model_b",
                              aggfunc="size", fill_value=0)
    ptbl_tie = ptbl_tie + ptbl_tie.T
    ptbl_b_win = pd.pivot_table(df[df["winner"] == "model_b"], index="model_a", columns="model_b", aggfunc="size",
                                fill_value=0)
    ptbl_win = ptbl_a_win * 2 + ptbl_b_win.T * 2 + ptbl_tie
    models = pd.Series(np.arange(len(ptbl_win.index)), index=ptbl_win.index)
    p = len(models)
    X = np.zeros([p * (p - 1) * 2, p])
    Y = np.zeros(p * (p - 1) * 2)
    cur_row, sample_weights = 0, []
    for m_a in ptbl_win.index:
        for m_b in ptbl_win.columns:
            if m_a == m_b:
                continue
            if math.isnan(ptbl_win.loc[m_a, m_b]) or math.isnan(ptbl_win.loc[m_b, m_a]):
                continue
            X[cur_row, models[m_a]] = +math.log(BASE)
            X[cur_row, models[m_b]] = -math.log(BASE)
            Y[cur_row] = 1.0
            sample_weights.append(ptbl_win.loc[m_a, m_b])
            X[cur_row + 1, models[m_a]] = math.log(BASE)
            X[cur_row + 1, models[m_b]] = -math.log(BASE)
            Y[cur_row + 1] = 0.0
            sample_weights.append(ptbl_win.loc[m_b, m_a])
            cur_row += 2
    X, Y = X[:cur_row], Y[:cur_row]
    # FastChat uses lbfgs with tol=1e-6; Newton-CG with a tighter tolerance makes the reference accurate to 1e-6
    lr = LogisticRegression(fit_intercept=False, C=np.inf, solver="newton-cg", tol=1e-12, max_iter=10_000)
    lr.fit(X, Y, sample_weight=sample_weights)
    return pd.Series(SCALE * lr.coef_[0] + INIT_RATING, index=models.index)
# ------------------------------------------------------------------------------------------------------------


def frame(votes: list[Battle]) -> pd.DataFrame:
    return pd.DataFrame([{"model_a": v.model_a, "model_b": v.model_b, "winner": v.winner} for v in votes])


def test_online_elo_equals_fastchat():
    votes = fixed_votes()
    elo, _, _ = fit(votes, MODELS)
    ref = compute_elo(frame(votes))
    assert np.allclose(elo, [ref[m] for m in MODELS], atol=1e-6, rtol=0)
    assert elo.round(6).tolist() != [1000.0] * 4


def test_bradley_terry_equals_fastchats_logistic_regression():
    votes = fixed_votes()
    _, bt, exact = fit(votes, MODELS)
    ref = compute_mle_elo(frame(votes))
    assert exact
    assert np.allclose(bt, [ref[m] for m in MODELS], atol=1e-6, rtol=0), (bt, ref)
    assert list(np.argsort(-bt)) == [0, 1, 2, 3], "the strongest simulated model must come first"


def test_bootstrap_rounds_equal_the_reference_on_the_same_resamples():
    votes = fixed_votes()
    elo, bt = bootstrap(votes, MODELS, rounds=3, seed=11)
    rng = np.random.default_rng(11)
    for r in range(3):
        sample = frame(votes).iloc[rng.integers(0, len(votes), len(votes))]
        ref_elo = compute_elo(sample)
        assert np.allclose(elo[r], [ref_elo[m] for m in MODELS], atol=1e-6, rtol=0)
        ref_bt = compute_mle_elo(sample)
        assert np.allclose(bt[r], [ref_bt[m] for m in MODELS], atol=1e-6, rtol=0)


def test_leaderboard_intervals_hold_the_estimate_and_counts_are_right():
    votes = fixed_votes()
    rows, exact = leaderboard(votes, rounds=100, seed=0)
    assert exact and [r.model for r in rows][0] == "alpha"
    for r in rows:
        assert r.bt_low <= r.bt <= r.bt_high and r.elo_low <= r.elo_high
        assert r.battles == sum(r.model in (v.model_a, v.model_b) for v in votes)
    alpha = rows[0]
    assert alpha.wins == sum((v.winner == "model_a" and v.model_a == "alpha") or
                             (v.winner == "model_b" and v.model_b == "alpha") for v in votes)


def test_an_undefeated_model_gets_a_finite_rating_and_the_fit_says_it_is_not_exact():
    votes = [Battle("a", "b", "model_a"), Battle("b", "a", "model_b"), Battle("a", "c", "tie")]
    rows, exact = leaderboard(votes, rounds=20)
    assert not exact
    assert all(np.isfinite([r.bt, r.bt_low, r.bt_high]).all() for r in rows)
    assert rows[0].model == "a"


def test_an_unknown_vote_is_refused():
    with pytest.raises(ValueError, match="winner must be one of"):
        fit([Battle("a", "b", "draw")], ["a", "b"])
