"""Refusals before a job exists: empty columns, truncation counted, memory, settings; formatting of each shape."""

from __future__ import annotations

import pytest

from errors import LimitReached, UserError
from finetune.data import DataSpec, detect, to_examples
from finetune.jobs import JobStore
from finetune.service import FinetuneService
from finetune.settings import TrainSettings


@pytest.fixture
def tokenizer(sharp_llama):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(sharp_llama)


def test_each_shape_becomes_prompt_and_learned_completion(tokenizer):
    chat = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}]
    (e,), _ = to_examples(chat, DataSpec("x", "messages", "messages"), tokenizer)
    assert e.prompt == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n" and e.completion == "hello<|im_end|>\n"
    rows = [{"instruction": "2+2?", "output": "4"}]
    (e,), _ = to_examples(rows, DataSpec("x", "instruction", "instruction", "output", "alpaca"), tokenizer)
    assert e.prompt == "### Instruction:\n2+2?\n\n### Response:\n" and e.completion == "4<|im_end|>"
    (e,), _ = to_examples([{"text": "once upon"}], DataSpec("x", "text", "text", "", "plain"), tokenizer)
    assert e.prompt == "" and e.completion == "once upon<|im_end|>"
    assert detect(["id", "messages"]).kind == "messages" and detect(["question", "answer"]).response_column == "answer"


def test_empty_rows_are_skipped_and_an_empty_column_refused(tokenizer):
    rows = [{"q": "a", "r": "b"}, {"q": "", "r": "x"}, {"q": None, "r": None}]
    examples, skipped = to_examples(rows, DataSpec("x", "instruction", "q", "r"), tokenizer)
    assert len(examples) == 1 and skipped == 2
    with pytest.raises(UserError, match="every one of the 2 rows is empty in column 'q/r'"):
        to_examples(rows[1:], DataSpec("x", "instruction", "q", "r"), tokenizer)


def test_rows_over_the_cutoff_are_counted_and_memory_is_checked(tmp_path, sharp_llama, models_root):
    from engines.resolve import HubProbe, ModelResolver
    from finetune.layout import Layout

    rows = [{"text": "hello world " * n} for n in (1, 2, 40, 80)]
    layout = Layout(tmp_path / "ft")
    store = JobStore(layout.db)
    resolver = ModelResolver((models_root,), tmp_path, HubProbe(offline=True))
    service = FinetuneService(layout, store, resolver, lambda s: (["text"], rows), lambda: ("cpu", False),
                              available=lambda: 300 << 20)
    spec = DataSpec("x", "text", "text", "", "plain")
    ins = service.inspect(str(sharp_llama), spec, TrainSettings(cutoff_len=32, val_split=0.25))
    assert ins.stats.truncated == 2 and ins.stats.rows == 4 and (ins.train_rows, ins.val_rows) == (3, 1)
    assert "**2 (50%) longer than the cutoff of 32**" in ins.summary()
    with pytest.raises(LimitReached, match=r"not enough memory: this run needs about 0\.\d GB and 0\.3 GB"):
        service.start(str(sharp_llama), spec, TrainSettings(cutoff_len=32, val_split=0.25))
    assert store.list() == []  # refused before a job existed
    with pytest.raises(UserError, match="the dataset has no column 'body'"):
        service.inspect(str(sharp_llama), DataSpec("x", "text", "body"), TrainSettings())


@pytest.mark.parametrize("values, words", [
    ({"lora_rank": 0}, "lora_rank must be between 1 and 1024, got 0"),
    ({"learning_rate": "fast"}, "learning_rate must be a number, got 'fast'"),
    ({"batch_size": 2.5}, "batch_size must be a whole number, got 2.5"),
    ({"scheduler": "wavy"}, "scheduler must be one of"),
    ({"rank": 4}, "unknown training settings ['rank']"),
])
def test_bad_settings_are_refused_by_name(values, words):
    with pytest.raises(UserError, match=words.replace("[", r"\[").replace("]", r"\]")):
        TrainSettings.from_dict(values)


def test_an_adapter_folder_resolves_to_its_base_or_says_why_not(tmp_path, sharp_llama, models_root):
    import json

    from engines.resolve import HubProbe, ModelNotFound, ModelResolver

    resolver = ModelResolver((models_root, tmp_path), tmp_path, HubProbe(offline=True))
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(sharp_llama)}))
    resolved = resolver.resolve(str(adapter))
    assert (resolved.location, resolved.source, resolved.adapter) == (str(sharp_llama), "local folder", str(adapter))
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": ""}))
    with pytest.raises(ModelNotFound, match="does not name its base model"):
        resolver.resolve(str(adapter))
