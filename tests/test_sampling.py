"""Picking a batch's next tokens: transformers' numbers for every row, and a bad row fails alone."""

from __future__ import annotations

import torch
from transformers import RepetitionPenaltyLogitsProcessor

from engines.params import GenerationParams
from engines.sampling import pick_tokens


def test_greedy_rows_follow_transformers_repetition_penalty():
    torch.manual_seed(0)
    logits = torch.randn(3, 50) * 3
    seen = [{1, 7, 49}, set(), {0, 2, 3, 4}]
    penalties = [1.3, 1.0, 0.8]
    params = [GenerationParams(temperature=0, repetition_penalty=p) for p in penalties]
    picks = pick_tokens(logits, params, seen, [None] * 3, [True, False, True])
    for i, (token, prob) in enumerate(picks):
        ids = torch.tensor([sorted(seen[i]) or [0]])
        scores = logits[i:i + 1].clone()
        if seen[i] and penalties[i] != 1.0:
            scores = RepetitionPenaltyLogitsProcessor(penalties[i])(ids, scores)
        assert token == int(scores.argmax())
        if i != 1:
            assert abs(prob - float(scores.softmax(-1)[0, token])) < 1e-6
        else:
            assert prob is None


def test_penalty_changes_the_choice_only_where_asked():
    logits = torch.tensor([[0.0, 5.0, 4.9], [0.0, 5.0, 4.9]])
    picks = pick_tokens(logits, [GenerationParams(temperature=0, repetition_penalty=1.5),
                                 GenerationParams(temperature=0, repetition_penalty=1.0)],
                        [{1}, {1}], [None, None], [False, False])
    assert [p[0] for p in picks] == [2, 1]
    assert logits[0, 1] == 5.0, "the caller's logits are left as they were"


def test_seeded_sampling_is_reproducible_per_row_whatever_the_batch():
    torch.manual_seed(1)
    logits = torch.randn(4, 30)
    params = [GenerationParams(temperature=1.0, top_k=0, top_p=1.0, repetition_penalty=1.0)] * 4

    def alone(i: int) -> int:
        gen = torch.Generator().manual_seed(100 + i)
        return pick_tokens(logits[i:i + 1], params[:1], [set()], [gen], [False])[0][0]

    gens = [torch.Generator().manual_seed(100 + i) for i in range(4)]
    together = [p[0] for p in pick_tokens(logits, params, [set()] * 4, gens, [False] * 4)]
    assert together == [alone(i) for i in range(4)]


def test_a_row_without_finite_scores_fails_alone():
    logits = torch.randn(3, 10)
    logits[1] = float("nan")
    greedy = GenerationParams(temperature=0, repetition_penalty=1.0)
    picks = pick_tokens(logits, [greedy] * 3, [set()] * 3, [None] * 3, [False] * 3)
    assert isinstance(picks[1], ValueError) and "no finite scores" in str(picks[1])
    assert picks[0] == (int(logits[0].argmax()), None) and picks[2] == (int(logits[2].argmax()), None)
