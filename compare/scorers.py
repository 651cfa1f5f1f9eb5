"""Scorers for evaluation runs: each maps (output, reference) to a number in [0, 1].

Exact match and contains compare normalised text (case, surrounding space and runs of whitespace ignored); regex
searches the output for a pattern the person gives; ROUGE-L (F-measure, stemmed) is computed as Google's
`rouge-score` computes it (that package is not a wheel on PyPI; nltk's Porter stemmer is), chrF and sentence BLEU
come from `sacrebleu`, both rescaled from 0-100 to 0-1. A judge model's score comes from its own reply to a rubric
prompt, parsed by `parse_judge_score`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass

from errors import UserError

NEEDS_REFERENCE = ("exact_match", "contains", "rouge_l", "chrf", "bleu")
SCORERS = (*NEEDS_REFERENCE, "regex")
_NON_ALNUM = re.compile(r"[^a-z0-9]+")
MAX_ROUGE_TOKENS = 4_000  # the LCS table is len(output) x len(reference): bounded so one row cannot take seconds
DEFAULT_RUBRIC = (
    "You are grading an answer.\nQuestion: {prompt}\nReference answer: {reference}\nAnswer to grade: {output}\n"
    "Rate the answer's correctness and helpfulness from 1 (useless) to 10 (perfect). Reply with 'Score: N'."
)


class ScorerError(UserError):
    """A scorer cannot be used as asked (unknown name, a pattern that does not compile, no reference column)."""


def normalise(text: str) -> str:
    return " ".join((text or "").split()).casefold()


def exact_match(output: str, reference: str) -> float:
    return float(normalise(output) == normalise(reference))


def contains(output: str, reference: str) -> float:
    return float(bool(normalise(reference)) and normalise(reference) in normalise(output))


@functools.cache
def _stemmer():
    from nltk.stem import porter

    return porter.PorterStemmer()


def rouge_tokens(text: str) -> list[str]:
    """ROUGE's tokens as Google's `rouge-score` makes them: lower case, runs of anything but a-z/0-9 split words,
    words over three letters Porter-stemmed."""
    words = _NON_ALNUM.sub(" ", text.lower()).split()
    return [_stemmer().stem(w) if len(w) > 3 else w for w in words]


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence (one row of the dynamic-programming table at a time)."""
    row = [0] * (len(b) + 1)
    for x in a:
        diagonal = 0
        for j, y in enumerate(b, 1):
            diagonal, row[j] = row[j], diagonal + 1 if x == y else max(row[j], row[j - 1])
    return row[-1]


def rouge_l(output: str, reference: str) -> float:
    """ROUGE-L F-measure (as `rouge-score`'s rougeL with use_stemmer=True, which is not a wheel on PyPI)."""
    out, ref = rouge_tokens(output)[:MAX_ROUGE_TOKENS], rouge_tokens(reference)[:MAX_ROUGE_TOKENS]
    if not out or not ref:
        return 0.0
    common = lcs_length(ref, out)
    if not common:
        return 0.0
    precision, recall = common / len(out), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def chrf(output: str, reference: str) -> float:
    import sacrebleu

    return sacrebleu.sentence_chrf(output, [reference]).score / 100


def bleu(output: str, reference: str) -> float:
    import sacrebleu

    return sacrebleu.sentence_bleu(output, [reference]).score / 100


def compile_pattern(pattern: str) -> re.Pattern:
    """The person's regex, or a ScorerError that quotes the compiler's complaint."""
    if not pattern:
        raise ScorerError("the regex scorer needs a pattern: type one (e.g. \\bParis\\b) or untick regex")
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise ScorerError(f"the regex {pattern!r} does not compile: {exc}; fix it or untick regex") from None


@dataclass(frozen=True)
class ScoreSet:
    """The scorers chosen for a run, validated once before anything starts."""

    names: tuple[str, ...]
    pattern: str = ""

    def __post_init__(self) -> None:
        unknown = [n for n in self.names if n not in SCORERS]
        if unknown:
            raise ScorerError(f"unknown scorers {unknown}; choose from {list(SCORERS)}")
        if "regex" in self.names:
            compile_pattern(self.pattern)

    def check_reference(self, has_reference: bool) -> None:
        needing = [n for n in self.names if n in NEEDS_REFERENCE]
        if needing and not has_reference:
            raise ScorerError(f"the scorers {needing} compare with a reference answer, but no reference column was "
                              f"given: name one, or keep only regex (and a judge)")

    def score(self, output: str, reference: str | None) -> dict[str, float]:
        """Every chosen score of one output; reference-based ones are left out when the row has no reference."""
        fns: dict[str, Callable[[str, str], float]] = {"exact_match": exact_match, "contains": contains,
                                                        "rouge_l": rouge_l, "chrf": chrf, "bleu": bleu}
        scores = {n: round(fns[n](output, reference), 6) for n in self.names
                  if n in fns and reference is not None}
        if "regex" in self.names:
            scores["regex"] = float(compile_pattern(self.pattern).search(output or "") is not None)
        return scores


def judge_prompt(rubric: str, prompt: str, output: str, reference: str | None) -> str:
    """The rubric with {prompt}, {output} and {reference} filled in (other braces are left as they are)."""
    values = {"prompt": prompt, "output": output, "reference": reference or "(none)"}
    return re.sub(r"\{(prompt|output|reference)\}", lambda m: values[m.group(1)], rubric or DEFAULT_RUBRIC)


def parse_judge_score(reply: str) -> float | None:
    """'Score: 7' (or the first whole number 1-10) as 0.7; None when the judge gave no usable number."""
    match = re.search(r"score\s*[:=]?\s*(\d+(?:\.\d+)?)", reply or "", re.IGNORECASE) or \
        re.search(r"\b(10|[1-9])\b", reply or "")
    if match is None:
        return None
    value = float(match.group(1))
    return round(value / 10, 6) if 1 <= value <= 10 else None
