"""Every source format round-trips through the browser: what is written is what a page shows."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest
from PIL import Image

from databrowser import DatasetError, RefusedError, SourceRef, ViewSpec

ROWS = [{"id": i, "name": f"item {i}", "score": i * 0.5, "tag": "odd" if i % 2 else "even"} for i in range(250)]


def all_rows(browser, source: str, split: str = "") -> list[dict]:
    ref = SourceRef(source, split=split)
    page = browser.page("t", ref, ViewSpec(), 1, 1000)
    return page.rows.to_pylist()


def test_csv_round_trip(browser, allowed):
    pacsv.write_csv(pa.Table.from_pylist(ROWS), str(allowed / "data.csv"))
    assert all_rows(browser, str(allowed / "data.csv")) == ROWS


def test_tsv_round_trip(browser, allowed):
    lines = ["id\tname\tscore\ttag"] + [f"{r['id']}\t{r['name']}\t{r['score']}\t{r['tag']}" for r in ROWS]
    (allowed / "data.tsv").write_text("\n".join(lines) + "\n")
    assert all_rows(browser, str(allowed / "data.tsv")) == ROWS


def test_json_array_round_trip(browser, allowed):
    (allowed / "data.json").write_text(json.dumps(ROWS))
    assert all_rows(browser, str(allowed / "data.json")) == ROWS


def test_json_lines_round_trip(browser, allowed):
    (allowed / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    assert all_rows(browser, str(allowed / "data.jsonl")) == ROWS


def test_parquet_round_trip(browser, allowed):
    pq.write_table(pa.Table.from_pylist(ROWS), str(allowed / "data.parquet"), row_group_size=64)
    assert all_rows(browser, str(allowed / "data.parquet")) == ROWS


@pytest.mark.parametrize("kind", ["file", "stream"])
def test_arrow_round_trip(browser, allowed, kind):
    table = pa.Table.from_pylist(ROWS)
    path = allowed / f"data-{kind}.arrow"
    if kind == "file":
        feather.write_feather(table, str(path), compression="uncompressed")
    else:
        with pa.ipc.new_stream(str(path), table.schema) as writer:
            writer.write_table(table)
    assert all_rows(browser, str(path)) == ROWS


def test_plain_text_round_trip(browser, allowed):
    lines = ["first line", "", "third — with ünïcode", "last"]
    (allowed / "notes.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    rows = all_rows(browser, str(allowed / "notes.txt"))
    assert [r["text"] for r in rows] == lines
    assert [r["line"] for r in rows] == [1, 2, 3, 4]


def test_image_folder_with_labels(browser, allowed):
    for label, colour in (("red", (255, 0, 0)), ("blue", (0, 0, 255))):
        (allowed / "imgs" / label).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), colour).save(allowed / "imgs" / label / f"{i}.png")
    ds = browser.open("t", SourceRef(str(allowed / "imgs")))
    kinds = {c.name: c.kind for c in ds.columns}
    assert kinds == {"image": "image", "file": "string", "label": "label"}
    assert ds.column("label").label_names == ("blue", "red")
    rows = all_rows(browser, str(allowed / "imgs"))
    first = Image.open(io.BytesIO(rows[0]["image"]["bytes"]))
    assert rows[0]["file"] == "blue/0.png" and first.getpixel((0, 0)) == (0, 0, 255)


def test_save_to_disk_dataset_and_dict(browser, allowed):
    import datasets

    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neg", "pos"])})
    train = datasets.Dataset.from_dict({"text": ["good", "bad", "fine"], "label": [1, 0, 1]}, features=features)
    test = datasets.Dataset.from_dict({"text": ["meh"], "label": [0]}, features=features)
    train.save_to_disk(str(allowed / "single"))
    datasets.DatasetDict({"train": train, "test": test}).save_to_disk(str(allowed / "dict"))
    assert all_rows(browser, str(allowed / "single")) == [{"text": "good", "label": 1}, {"text": "bad", "label": 0},
                                                          {"text": "fine", "label": 1}]
    ds = browser.open("t", SourceRef(str(allowed / "dict")))
    assert ds.splits == ("train", "test") and ds.split == "train"
    assert ds.column("label").label_names == ("neg", "pos")
    assert all_rows(browser, str(allowed / "dict"), split="test") == [{"text": "meh", "label": 0}]
    with pytest.raises(DatasetError, match="no split 'validation'"):
        browser.open("t", SourceRef(str(allowed / "dict"), split="validation"))


def test_upload_round_trip_and_size_limit(browser, tmp_path):
    upload_dir = tmp_path / "gradio-upload"
    upload_dir.mkdir()
    path = upload_dir / "up.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), str(path))
    ref, ds = browser.open_upload("t", path, "up.parquet")
    assert ref.source.startswith("upload:") and ds.name == "up.parquet"
    assert browser.page("t", ref, ViewSpec(), 1, 1000).rows.to_pylist() == ROWS
    big = upload_dir / "big.csv"
    big.write_text("x\n" + "1234567890\n" * 120_000)  # 1.3 MB > the fixture's 1 MB limit
    with pytest.raises(RefusedError, match="limited to 1 MB"):
        browser.open_upload("t", big, "big.csv")


def test_samples_offline(browser):
    plays = browser.open("t", SourceRef("sample:shakespeare"))
    assert plays.num_rows > 200_000
    hits = browser.page("t", SourceRef("sample:shakespeare"), ViewSpec(search="to be, or not to be"), 1, 10)
    assert {r["play"] for r in hits.rows.to_pylist()} == {"Hamlet"}
    digits = browser.open("t", SourceRef("sample:digits"))
    assert digits.num_rows == 1797 and [c.kind for c in digits.columns] == ["image", "label"]
    first = browser.cell("t", SourceRef("sample:digits"), 0, "image")
    image = Image.open(io.BytesIO(first["bytes"]))
    assert image.size == (64, 64) and image.format == "PNG"
    from sklearn.datasets import load_digits

    expected = (255 - load_digits().images[0] * (255 / 16)).clip(0, 255).astype(np.uint8)
    assert np.array_equal(np.asarray(image)[::8, ::8], expected)  # dark ink on white, each pixel 8x8
    assert browser.cell("t", SourceRef("sample:digits"), 0, "label") == 0


def test_hub_offline_fails_fast(browser):
    import time

    start = time.perf_counter()
    with pytest.raises(DatasetError, match="offline"):
        browser.open("t", SourceRef("hub:stanfordnlp/imdb"))
    assert time.perf_counter() - start < 2


@pytest.mark.parametrize("stream", [False, True])
def test_hub_loading_path_with_a_stand_in_hub(browser, monkeypatch, stream):
    """The online path, with the hub replaced by a local dataset (no network here): config, split, streaming."""
    import datasets

    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["a", "b"])})
    local = datasets.Dataset.from_dict({"text": [f"t{i}" for i in range(30)], "label": [i % 2 for i in range(30)]},
                                       features=features)
    calls = []

    def load_dataset(repo, name=None, split=None, streaming=False):
        calls.append((repo, name, split, streaming))
        return local.to_iterable_dataset(num_shards=3) if streaming else local

    monkeypatch.setattr(datasets, "get_dataset_config_names", lambda repo: ["plain", "other"])
    monkeypatch.setattr(datasets, "get_dataset_split_names", lambda repo, config=None: ["train", "test"])
    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("HF_DATASETS_OFFLINE")
    browser.offline = False
    ref = SourceRef("hub:someone/data", split="test", stream=stream)
    ds = browser.open("t", ref)
    assert calls == [("someone/data", "plain", "test", stream)]
    assert (ds.configs, ds.config, ds.splits, ds.split, ds.partial) == (("plain", "other"), "plain",
                                                                       ("train", "test"), "test", stream)
    assert ds.column("label").label_names == ("a", "b")
    rows = browser.page("t", ref, ViewSpec(where="label = 1"), 1, 100).rows.to_pylist()
    assert rows == [{"text": f"t{i}", "label": 1} for i in range(1, 30, 2)]
