"""Choosing the next token from one sequence's logits, the way `generate` does, with the request's own generator.

Order as in transformers: repetition penalty, then temperature, top-k, top-p. The probability reported for a token
is taken after the repetition penalty and before temperature and truncation (as `ProbabilityRecorder` does).
"""

from __future__ import annotations

import torch

from models.params import GenerationParams


def penalize(logits: torch.Tensor, seen: torch.Tensor | None, penalty: float) -> torch.Tensor:
    """Make already seen tokens less likely: positive scores divided by `penalty`, negative ones multiplied."""
    if penalty == 1.0 or seen is None or seen.numel() == 0:
        return logits
    scores = logits.clone()
    picked = scores[seen]
    scores[seen] = torch.where(picked < 0, picked * penalty, picked / penalty)
    return scores


def truncate(scores: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Set scores outside the top-k and outside the top-p nucleus to -inf (always keeping the best token)."""
    if top_k and 0 < top_k < scores.numel():
        kth = torch.topk(scores, top_k).values[-1]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p < 1.0:
        ordered, order = torch.sort(scores)  # ascending, as transformers' TopPLogitsWarper
        cumulative = ordered.softmax(-1).cumsum(-1)
        drop = cumulative <= 1 - top_p
        drop[-1] = False
        scores = scores.masked_fill(drop.scatter(0, order, drop), float("-inf"))
    return scores


def pick_token(logits: torch.Tensor, params: GenerationParams, seen: torch.Tensor | None,
               generator: torch.Generator | None, with_prob: bool = False) -> tuple[int, float | None]:
    """The next token id for one sequence (1-D `logits`), and its probability when asked for."""
    if not bool(torch.isfinite(logits).any()):
        raise ValueError("the model returned no finite scores for this step")
    scores = penalize(logits, seen, params.repetition_penalty)
    probs = torch.softmax(scores, -1) if with_prob else None
    if params.greedy:
        token = int(torch.argmax(scores))
    else:
        warped = truncate(scores / params.temperature, params.top_k, params.top_p)
        token = int(torch.multinomial(torch.softmax(warped, -1), 1, generator=generator))
    return token, (float(probs[token]) if probs is not None else None)
