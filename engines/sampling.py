"""Choosing the next tokens of a batch's sequences the way `generate` does, each with its request's own generator.

Order as in transformers: repetition penalty, then temperature, top-k, top-p. The probability reported for a token
is taken after the repetition penalty and before temperature and truncation (as `ProbabilityRecorder` does).
"""

from __future__ import annotations

import torch

from engines.params import GenerationParams


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


def pick_tokens(logits: torch.Tensor, params: list[GenerationParams], seen: list[set[int]],
                generators: list[torch.Generator | None], with_probs: list[bool]) -> list[tuple[int, float | None]
                                                                                           | Exception]:
    """The next token (and its probability when asked for) for every row of a batch's (rows, vocabulary) `logits`.

    The shared work (finiteness, repetition penalty, greedy choice) runs once over all rows. A row that cannot be
    picked (no finite score, a sampling failure) gets its exception in place of its token, so that only its own
    request fails.
    """
    rows, vocab = logits.shape
    finite = torch.isfinite(logits).any(-1).tolist()
    scores = logits
    penalized = [i for i in range(rows) if params[i].repetition_penalty != 1.0 and seen[i]]
    if penalized:  # one gather and one scatter over the flattened rows
        scores = logits.clone()
        flat = scores.view(-1)
        index = torch.tensor([i * vocab + t for i in penalized for t in seen[i]], device=logits.device)
        penalty = torch.tensor([params[i].repetition_penalty for i in penalized for _ in seen[i]],
                               dtype=logits.dtype, device=logits.device)
        picked = flat[index]
        flat[index] = torch.where(picked < 0, picked * penalty, picked / penalty)
    best = scores.argmax(-1).tolist() if any(p.greedy for p in params) else []
    out: list[tuple[int, float | None] | Exception] = []
    for i in range(rows):
        if not finite[i]:
            out.append(ValueError("the model returned no finite scores for this step"))
            continue
        try:
            if params[i].greedy:
                token = best[i]
            else:
                warped = truncate(scores[i] / params[i].temperature, params[i].top_k, params[i].top_p)
                token = int(torch.multinomial(torch.softmax(warped, -1), 1, generator=generators[i]))
            prob = float(torch.softmax(scores[i], -1)[token]) if with_probs[i] else None
        except Exception as exc:
            out.append(exc)
            continue
        out.append((token, prob))
    return out
