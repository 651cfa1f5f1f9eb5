"""A finished job's checkpoints: evaluated, merged and exported, zipped, resumed; the adapter served by the engine."""

from __future__ import annotations

import json
import zipfile

import pytest
import torch
from conftest import wait_for

from finetune import export
from finetune.data import DataSpec
from finetune.jobs import DONE

SPEC = DataSpec("qa", "instruction", "question", "answer", "chat")


def test_merge_and_export_reloads_with_the_logits_of_base_plus_adapter(finished, service, manager, layout, tmp_path):
    from transformers import AutoModelForCausalLM

    checkpoint = service.checkpoint(finished.id, 6)
    dest = export.merge_and_export(finished, checkpoint, layout.exports(finished.id) / "merged-6", manager.store)
    card = (dest / "README.md").read_text()
    assert f"base_model: {finished.base}" in card and '"lora_rank": 8' in card and '"source": "qa"' in card
    assert any(p.suffix == ".safetensors" for p in dest.iterdir())
    reloaded = AutoModelForCausalLM.from_pretrained(dest, dtype=torch.float32).eval()
    with_adapter, tok = export.load_with_adapter(finished, checkpoint)
    ids = tok("what is paris?", return_tensors="pt").input_ids
    with torch.no_grad():
        expected, got = with_adapter(ids).logits, reloaded(ids).logits
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    base = AutoModelForCausalLM.from_pretrained(finished.data["base_location"], dtype=torch.float32).eval()
    with torch.no_grad():
        assert (base(ids).logits - got).abs().max() > 1e-2  # the merge really changed the weights


def test_evaluate_gives_the_validation_loss_the_run_logged(finished, service, manager):
    logged = {s: v for s, kind, v in manager.store.losses(finished.id) if kind == "validation"}
    assert set(logged) == {6, 12}
    loss = export.evaluate(finished, service.checkpoint(finished.id, 6))
    assert loss == pytest.approx(logged[6], rel=1e-4)


def test_the_adapter_zip_names_the_base_as_given(finished, service, manager):
    archive = export.adapter_zip(finished, service.checkpoint(finished.id, 12), manager.store)
    with zipfile.ZipFile(archive) as z:
        assert {"adapter_config.json", "adapter_model.safetensors", "README.md"} <= set(z.namelist())
        assert json.loads(z.read("adapter_config.json"))["base_model_name_or_path"] == finished.base


def test_the_text_engine_serves_base_plus_adapter_through_the_cache(finished, service, layout, models_root):
    from engines.cache import ModelCache
    from engines.device import choose_placement
    from engines.params import GenerationParams
    from engines.resolve import HubProbe, ModelResolver
    from engines.text import TextEngine

    resolver = ModelResolver((models_root, layout.root), layout.root / "converted", HubProbe(offline=True))
    cache = ModelCache(max_models=3)
    engine = TextEngine(cache, resolver, choose_placement("cpu", "float32"), max_batch=0)
    adapter = next(a for a in service.adapters() if a["job"] == finished.id)
    greedy = GenerationParams(temperature=0, max_new_tokens=8, repetition_penalty=1.0)
    tuned = "".join(u.delta for u in engine.complete(adapter["ref"], "what is rome?", greedy))
    plain = "".join(u.delta for u in engine.complete(finished.base, "what is rome?", greedy))
    assert tuned != plain
    rows = {r.key: r for r in cache.rows()}
    assert rows[adapter["ref"]].source == "local folder + LoRA adapter merged on load (torch path)"
    assert rows[finished.base].source == "local folder"


def test_resume_from_an_earlier_checkpoint_replays_the_later_steps(finished, service, manager, layout):
    job = service.resume(finished.id, 6)
    assert job.status == "queued" and [s for s, _ in layout.checkpoints(job.id)] == [6]
    assert finished.id not in [a["job"] for a in service.adapters()]  # back when the run ends again
    job = wait_for(manager, job.id)
    assert job.status == DONE and job.step == 12
    assert [s for s, _ in layout.checkpoints(job.id)] == [6, 12]
    assert finished.id in [a["job"] for a in service.adapters()]
