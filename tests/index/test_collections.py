"""Collections: adding files and dataset columns, idempotence, bad input, indexing state, restart, RAG."""

from __future__ import annotations

import pytest

from store import CollectionError, CollectionIndex, Document, DocumentError, format_sources, rag_message
from store.documents import MAX_DOCUMENT_CHARS

OWNER = "user:alice"


def tiny_pdf(text: str) -> bytes:
    """A one-page PDF with a real text layer (built by hand: no PDF writer needed)."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
               b"/Resources << /Font << /F1 5 0 R >> >> >>",
               b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for i, obj in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (i, obj)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


@pytest.fixture
def files(tmp_path):
    d = tmp_path / "upload"
    d.mkdir()
    (d / "notes.md").write_text("# Kettles\nA kettle boils water for tea in about three minutes.\n")
    (d / "story.txt").write_text("The lighthouse keeper watched the ships pass the rocky island every night.")
    (d / "manual.pdf").write_bytes(tiny_pdf("The espresso machine needs descaling every month"))
    (d / "image.bin.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (d / "latin1.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    (d / "slides.pptx").write_bytes(b"PK\x03\x04")
    (d / "empty.txt").write_text("   \n")
    return d


def test_add_files_txt_md_pdf_and_search(index, files):
    index.create(OWNER, "docs", 40, 5)
    result = index.add_files(OWNER, "docs", [files / "notes.md", files / "story.txt", files / "manual.pdf"])
    assert (result.added, result.skipped) == (3, 0)
    assert index.worker.wait_idle(30)
    assert index.search(OWNER, "docs", "espresso descaling").passages[0].document == "manual.pdf"
    assert index.search(OWNER, "docs", "lighthouse ships").passages[0].document == "story.txt"
    again = index.add_files(OWNER, "docs", [files / "story.txt"])  # idempotent: same content, not indexed twice
    assert (again.added, again.skipped, index.info(OWNER, "docs").documents) == (0, 1, 3)


@pytest.mark.parametrize("name, message", [("image.bin.txt", "binary"), ("latin1.txt", "not UTF-8"),
                                           ("slides.pptx", "unsupported type .pptx"), ("empty.txt", "empty")])
def test_bad_files_are_refused_and_nothing_is_written(index, files, name, message):
    index.create(OWNER, "docs")
    with pytest.raises(DocumentError, match=message):
        index.add_files(OWNER, "docs", [files / "story.txt", files / name])
    info = index.info(OWNER, "docs")
    assert (info.documents, info.chunks) == (0, 0)


def test_size_limits(index, files):
    index.create(OWNER, "docs")
    with pytest.raises(DocumentError, match="limit is"):
        index.add_files(OWNER, "docs", [files / "story.txt"], max_bytes=10)
    with pytest.raises(DocumentError, match="limit per document"):
        from store.documents import check_text

        check_text("huge.txt", "x" * (MAX_DOCUMENT_CHARS + 1))


def test_collection_names_and_settings(index):
    index.create(OWNER, "a", 50, 10)
    assert index.create(OWNER, "a", 50, 10).name == "a"
    with pytest.raises(CollectionError, match="exists with chunks of 50"):
        index.create(OWNER, "a", 60, 10)
    with pytest.raises(CollectionError, match="collection name"):
        index.create(OWNER, "../etc", 50, 10)
    with pytest.raises(ValueError, match="overlap"):
        index.create(OWNER, "b", 10, 10)
    with pytest.raises(CollectionError, match="no collection named 'zzz'; yours: a"):
        index.search(OWNER, "zzz", "x")
    assert index.delete(OWNER, "a").name == "a" and index.names(OWNER) == []


def test_search_while_indexing_says_so(tmp_path, embedder):
    ix = CollectionIndex(tmp_path / "slow", embedder, start_worker=False)
    try:
        ix.create(OWNER, "big", 20, 0)
        ix.add_documents(OWNER, "big", [Document(f"d{i}", f"alpha beta gamma number{i} " * 10) for i in range(10)])
        result = ix.search(OWNER, "big", "number3", top_k=3)
        assert result.info.indexing and "still indexing (0 of" in result.notes[0]
        assert result.passages[0].document == "d3"  # keyword search works before embedding
        while ix.worker.run_once():
            pass
        done = ix.search(OWNER, "big", "number3", top_k=3)
        assert not done.info.indexing and done.notes == [] and done.passages[0].similarity is not None
    finally:
        ix.close()


def test_dataset_column_through_the_browser(tmp_path, index):
    from databrowser import DatasetBrowser, SourceRef

    data = tmp_path / "allowed"
    data.mkdir()
    (data / "faq.csv").write_text("id,question\n1,How do I reset my password?\n2,Where is the billing page?\n"
                                  "3,\n4,Can I export my data as CSV?\n")
    browser = DatasetBrowser(tmp_path / "dscache", [data], offline=True)
    ds = browser.open("s1", SourceRef(str(data / "faq.csv")))
    from store.documents import column_documents

    index.create(OWNER, "faq", 30, 5)
    result = index.add_documents(OWNER, "faq", column_documents(ds, "question"))
    assert (result.added, result.chunks) == (3, 3)  # the empty cell is not a document
    assert index.search(OWNER, "faq", "billing").passages[0].document.endswith(":question#1")
    with pytest.raises(DocumentError, match="expected a text column"):
        list(column_documents(ds, "id"))


def test_restart_keeps_collections_and_vector_cache(tmp_path, embedder):
    ix = CollectionIndex(tmp_path / "r", embedder)
    ix.create(OWNER, "keep", 20, 5)
    ix.add_documents(OWNER, "keep", [Document(f"d{i}", f"topic{i} " + "filler words here " * 20) for i in range(30)])
    assert ix.worker.wait_idle(30)
    before = ix.search(OWNER, "keep", "topic7 filler", top_k=5)
    chunks = ix.info(OWNER, "keep").chunks
    ix.close()
    assert (tmp_path / "r" / "vectors" / "c1.npy").exists()
    reopened = CollectionIndex(tmp_path / "r", embedder)
    try:
        after = reopened.search(OWNER, "keep", "topic7 filler", top_k=5)
        assert [(p.document, p.chunk) for p in after.passages] == [(p.document, p.chunk) for p in before.passages]
        info = reopened.info(OWNER, "keep")
        assert info.chunks == info.embedded == chunks > 30
    finally:
        reopened.close()


def test_retrieve_for_prompt_puts_passages_in_the_context(index, files):
    index.create(OWNER, "docs", 40, 5)
    index.add_files(OWNER, "docs", [files / "notes.md", files / "story.txt", files / "manual.pdf"])
    assert index.worker.wait_idle(30)
    context, sources = index.retrieve_for_prompt(OWNER, "docs", "how long does the kettle take to boil water?", 2, 400)
    assert "A kettle boils water for tea in about three minutes." in context
    assert context.startswith("[1] notes.md (chunk 0)") and len(context) <= 400
    assert sources[0].document == "notes.md" and sources[0].chunk == 0 and sources[0].collection == "docs"
    assert 0 < sources[0].score <= 1
    markdown = format_sources(sources)
    assert markdown.startswith("1. **notes.md** · chunk 0 · docs · score ") and format_sources([]) == ""
    assert "Question: kettle?" in rag_message(context, "kettle?") and rag_message("", "q") == "q"
    small, cut = index.retrieve_for_prompt(OWNER, "docs", "kettle water tea", 3, 100)
    assert len(small) <= 100 and len(cut) == 1
