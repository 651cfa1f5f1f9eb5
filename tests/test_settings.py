"""Config, generation parameters and the model catalog."""

from __future__ import annotations

import pytest

from config import REPO_DIR, AppConfig, parse_auth
from engines.catalog import load_catalog, parse_catalog
from engines.params import GenerationParams, parse_params


def test_params_accept_strings_and_numbers():
    p = parse_params(512, temperature="0.5", top_k=10.0, max_new_tokens="64", seed="7")
    assert p == GenerationParams(temperature=0.5, top_k=10, max_new_tokens=64, seed=7)
    assert parse_params(512, temperature=0).greedy


@pytest.mark.parametrize("values, words", [
    ({"temperature": "abc"}, "temperature must be a number, got 'abc'"),
    ({"temperature": 5}, "temperature must be between 0 and 2, got 5"),
    ({"top_p": 0}, "top_p must be between"),
    ({"top_k": 2.5}, "top_k must be a whole number"),
    ({"max_new_tokens": 100000}, "max_new_tokens must be between 1 and 512"),
    ({"seed": None}, "seed must be a number"),
    ({"temperature": float("nan")}, "finite"),
    ({"bogus": 1}, "unknown generation parameters ['bogus']"),
])
def test_params_refuse_bad_values_with_a_message(values, words):
    with pytest.raises(ValueError, match=None) as info:
        parse_params(512, **values)
    assert words in str(info.value)


def test_shipped_catalog_defaults_to_smollm2():
    catalog = load_catalog(REPO_DIR / "assets" / "catalog.json")
    assert catalog.default("chat") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert catalog.choices("chat")[0] == catalog.default("chat")
    assert len(catalog.choices("chat")) == len(set(catalog.choices("chat")))
    for _name, values in catalog.presets.items():
        parse_params(4096, **values)  # every preset is valid


def test_catalog_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="task 'chat' needs a 'default'"):
        parse_catalog({"tasks": {"chat": {}}})
    with pytest.raises(ValueError, match="unknown keys"):
        parse_catalog({"tasks": {}, "presets": {"x": {"warmth": 1}}})
    bad = tmp_path / "c.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="cannot read the model catalog"):
        load_catalog(bad)


def test_config_from_flags_and_env(monkeypatch, tmp_path):
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7999")
    monkeypatch.setenv("PLAYGROUND_DTYPE", "bfloat16")
    cfg = AppConfig.from_args(["--auth", "ann:pw", "--auth", "bob:x:y", "--device", "cpu", "--offline",
                               "--data-dir", str(tmp_path), "--allow-dir", str(tmp_path)])
    assert cfg.port == 7999 and cfg.dtype == "bfloat16" and cfg.device == "cpu" and cfg.offline
    assert cfg.auth == (("ann", "pw"), ("bob", "x:y"))
    assert cfg.models_dir == tmp_path / "models"
    assert tmp_path.resolve() in cfg.readable_dirs


def test_config_refuses_bad_values():
    with pytest.raises(ValueError, match="user:password"):
        parse_auth(["nopassword"])
    with pytest.raises(ValueError, match="device must be one of"):
        AppConfig(device="tpu")
    with pytest.raises(SystemExit):
        AppConfig.from_args(["--dtype", "float8"])


def test_split_linear_is_on_unless_turned_off(monkeypatch):
    assert AppConfig.from_args([]).split_linear
    assert not AppConfig.from_args(["--no-split-linear"]).split_linear
    monkeypatch.setenv("PLAYGROUND_NO_SPLIT_LINEAR", "1")
    assert not AppConfig.from_args([]).split_linear


def test_prefix_cache_size_from_flag_and_env(monkeypatch):
    assert AppConfig.from_args([]).prefix_cache_mb == 256
    assert AppConfig.from_args(["--prefix-cache-mb", "0"]).prefix_cache_mb == 0
    monkeypatch.setenv("PLAYGROUND_PREFIX_CACHE_MB", "64")
    assert AppConfig.from_args([]).prefix_cache_mb == 64
    with pytest.raises(ValueError, match="prefix_cache_mb must be >= 0, got -1"):
        AppConfig(prefix_cache_mb=-1)


def test_packed_linear_copy_is_on_unless_turned_off(monkeypatch):
    assert AppConfig.from_args([]).pack_linear
    assert not AppConfig.from_args(["--no-packed-linear"]).pack_linear
    monkeypatch.setenv("PLAYGROUND_NO_PACKED_LINEAR", "1")
    assert not AppConfig.from_args([]).pack_linear


@pytest.mark.parametrize("max_batch, slots", [(3, 3), (16, 16), (0, 8)])
def test_every_text_event_waits_in_one_queue_sized_like_the_batch(tmp_path, models_root, max_batch, slots):
    from helpers import make_config

    from app import build_app
    from services import build_services

    demo = build_app(build_services(make_config(tmp_path, models_root, max_batch=max_batch)))
    fns = list(demo.fns.values()) if isinstance(demo.fns, dict) else list(demo.fns)
    text = [fn for fn in fns if fn.concurrency_id == "text"]
    assert {fn.api_name for fn in text} >= {"chat", "generate", "retry"}
    assert {fn.concurrency_limit for fn in text} == {slots}
