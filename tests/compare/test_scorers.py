"""Scorers on known pairs: exact values from the libraries' own definitions."""

from __future__ import annotations

import pytest

from compare.scorers import ScorerError, ScoreSet, judge_prompt, parse_judge_score


def test_exact_match_and_contains_ignore_case_and_spacing():
    s = ScoreSet(("exact_match", "contains"))
    assert s.score("  Paris ", "paris") == {"exact_match": 1.0, "contains": 1.0}
    assert s.score("The capital is Paris.", "paris") == {"exact_match": 0.0, "contains": 1.0}
    assert s.score("Rome", "Paris") == {"exact_match": 0.0, "contains": 0.0}
    assert s.score("anything", "") == {"exact_match": 0.0, "contains": 0.0}, "an empty reference is not contained"


def test_rouge_l_is_the_lcs_f_measure():
    s = ScoreSet(("rouge_l",))
    # LCS of "the cat sat on the mat" and "the cat is on the mat" is "the cat on the mat": 5 of 6 tokens each way
    assert s.score("the cat sat on the mat", "the cat is on the mat")["rouge_l"] == pytest.approx(5 / 6, abs=1e-6)
    assert s.score("completely different words", "the cat")["rouge_l"] == 0.0
    # as rouge-score tokenizes: case and punctuation ignored, words over three letters stemmed
    assert s.score("The dogs were RUNNING!", "dog running")["rouge_l"] == pytest.approx(2 * (2 / 4) * 1 / 1.5)
    assert s.score("a b c d", "d c b a")["rouge_l"] == pytest.approx(0.25)
    assert s.score("", "the cat")["rouge_l"] == 0.0


def test_chrf_and_bleu_are_one_on_identical_text_and_lower_otherwise():
    s = ScoreSet(("chrf", "bleu"))
    same = s.score("the quick brown fox jumps over the lazy dog", "the quick brown fox jumps over the lazy dog")
    assert same == {"chrf": 1.0, "bleu": 1.0}
    other = s.score("the quick brown fox", "the quick brown fox jumps over the lazy dog")
    assert 0 < other["chrf"] < 1 and 0 <= other["bleu"] < 1
    import sacrebleu

    assert other["chrf"] == pytest.approx(sacrebleu.sentence_chrf("the quick brown fox", [
        "the quick brown fox jumps over the lazy dog"]).score / 100, abs=1e-6)


def test_regex_searches_the_output_and_a_bad_pattern_is_refused_with_the_reason():
    s = ScoreSet(("regex",), pattern=r"\bparis\b")
    assert s.score("It is Paris.", None) == {"regex": 1.0}
    assert s.score("It is Parisian.", None) == {"regex": 0.0}
    with pytest.raises(ScorerError, match=r"the regex '\(unclosed' does not compile: missing \)"):
        ScoreSet(("regex",), pattern="(unclosed")
    with pytest.raises(ScorerError, match="needs a pattern"):
        ScoreSet(("regex",))


def test_reference_scorers_need_a_reference_column_and_unknown_names_are_refused():
    with pytest.raises(ScorerError, match=r"\['exact_match'\] compare with a reference answer"):
        ScoreSet(("exact_match", "regex"), pattern="x").check_reference(False)
    with pytest.raises(ScorerError, match="unknown scorers \\['f1'\\]"):
        ScoreSet(("f1",))


def test_judge_prompt_and_score_parsing():
    prompt = judge_prompt("Q={prompt} A={output} R={reference} {other}", "2+2?", "4", None)
    assert prompt == "Q=2+2? A=4 R=(none) {other}"
    assert parse_judge_score("Score: 7") == 0.7
    assert parse_judge_score("I'd say 9 out of 10") == 0.9
    assert parse_judge_score("no idea") is None
    assert parse_judge_score("Score: 42") is None
