"""Incremental decoding and stop strings."""

from __future__ import annotations

from engines.streaming import IncrementalDecoder, StopStringScan


def test_stop_string_cuts_output_and_holds_partial_matches():
    scan = StopStringScan(("\n\n", "END"))
    assert scan.feed("Hello") == ("Hello", False)
    assert scan.feed(" E") == (" ", False)  # "E" could start "END": held back
    assert scan.feed("x") == ("Ex", False)
    assert scan.feed("\n") == ("", False)
    out, hit = scan.feed("\nmore")
    assert (out, hit) == ("", True)
    assert scan.text == "Hello Ex"


def test_stop_string_split_across_tokens():
    scan = StopStringScan(("STOP",))
    shown = ""
    for piece in ["go ", "ST", "O", "P", " never"]:
        out, hit = scan.feed(piece)
        shown += out
        if hit:
            break
    assert hit and shown == "go "


def test_flush_releases_held_text_when_no_stop_came():
    scan = StopStringScan(("END",))
    assert scan.feed("the E") == ("the ", False)
    assert scan.flush() == "E"


def test_incremental_decoder_matches_full_decode(tiny_llama):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama)
    text = "the capital of france is paris — ünïcode ✓ 123"
    ids = tok(text, add_special_tokens=False).input_ids
    decoder = IncrementalDecoder(tok)
    out = "".join(decoder.push(i) for i in ids)
    assert out == tok.decode(ids, skip_special_tokens=True)
