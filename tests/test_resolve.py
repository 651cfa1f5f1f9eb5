"""Model resolution: local folder, hub cache, hub, embedded copy, and refusals."""

from __future__ import annotations

import os
import time

import pytest

from engines.resolve import HubProbe, ModelNotFound, ModelResolver, looks_like_path


def resolver(tmp_path, allowed, offline=True):
    return ModelResolver((allowed,), tmp_path / "converted", HubProbe(offline=offline))


def test_local_folder_inside_allowed_dirs(tmp_path, tiny_llama, models_root):
    r = resolver(tmp_path, models_root).resolve(str(tiny_llama))
    assert r.source == "local folder" and r.local_only


def test_folder_outside_allowed_dirs_is_refused(tmp_path, models_root):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "config.json").write_text("{}")
    with pytest.raises(ModelNotFound, match="outside the allowed directories"):
        resolver(tmp_path, models_root).resolve(str(outside))
    with pytest.raises(ModelNotFound, match="outside the allowed directories"):
        resolver(tmp_path, models_root).resolve(str(models_root / ".." / "elsewhere"))


def test_symlink_escape_is_refused(tmp_path, models_root):
    target = tmp_path / "secret-model"
    target.mkdir()
    (target / "config.json").write_text("{}")
    link = models_root / "sneaky-link"
    if not link.exists():
        os.symlink(target, link)
    with pytest.raises(ModelNotFound, match="outside the allowed directories"):
        resolver(tmp_path, models_root).resolve(str(link))


def test_broken_folder_says_what_is_missing(tmp_path, models_root):
    empty = models_root / "empty-model"
    empty.mkdir(exist_ok=True)
    with pytest.raises(ModelNotFound, match="expected config.json"):
        resolver(tmp_path, models_root).resolve(str(empty))


def test_unknown_hub_id_offline_fails_fast_naming_what_was_tried(tmp_path, models_root):
    start = time.perf_counter()
    with pytest.raises(ModelNotFound) as info:
        resolver(tmp_path, models_root).resolve("nobody/no-such-model")
    message = str(info.value)
    assert "not in the local hub cache" in message and "offline" in message and "no embedded copy" in message
    assert time.perf_counter() - start < 20  # generous: the point is no 25 s of network retries


def test_malformed_ids_are_refused(tmp_path, models_root):
    with pytest.raises(ModelNotFound, match="neither an existing folder nor a hub id"):
        resolver(tmp_path, models_root).resolve("bad id with spaces")
    with pytest.raises(ModelNotFound, match="no model given"):
        resolver(tmp_path, models_root).resolve("  ")


def test_path_detection():
    assert looks_like_path("/abs/model") and looks_like_path("./m") and looks_like_path("a/b/c")
    assert not looks_like_path("owner/name") and not looks_like_path("gpt2")


def test_probe_respects_offline_flag():
    assert HubProbe(offline=True).online() is False
