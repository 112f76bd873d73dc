from __future__ import annotations

import itertools

import pytest

from genai_pipeline.config import Settings
from genai_pipeline.models.embeddings import make_token_counter
from genai_pipeline.models.tokens import TiktokenTokens
from genai_pipeline.steps.chunk import chunk_text, split_markdown

SIZE, OVERLAP = 64, 8


@pytest.fixture(scope="module", params=["minilm", "cl100k"])
def tokens(request: pytest.FixtureRequest):
    """Both tokenizers the chunker is used with: the local model's WordPiece and OpenAI's cl100k."""
    return make_token_counter(Settings()) if request.param == "minilm" else TiktokenTokens()


def chunk(text: str, tokens, markdown: bool = True, size: int = SIZE):
    return chunk_text(
        text, source_uri="kb/doc.md", title="Doc", markdown=markdown, tokens=tokens, size=size, overlap=OVERLAP
    )


def test_headings_outside_code_fences_split_sections() -> None:
    text = "# Guide\n\nIntro.\n\n## Install\n\n```sh\n# not a heading\n```\n\n### Linux\n\nApt.\n\n## Use\n\nRun it."
    sections = split_markdown(text)
    assert [s.headings for s in sections] == [
        ("Guide",),
        ("Guide", "Install"),
        ("Guide", "Install", "Linux"),
        ("Guide", "Use"),
    ]
    assert "# not a heading" in sections[1].text


def test_every_chunk_fits_the_budget_with_its_heading_context(tokens) -> None:
    body = " ".join(f"Sentence number {i} explains how the pipeline embeds documents." for i in range(120))
    text = f"# Manual\n\n## Embedding details\n\n{body}\n\n## Short\n\nTiny section."
    chunks = chunk(text, tokens)
    assert len(chunks) > 5
    assert all(c.token_count <= SIZE for c in chunks)
    long_chunks = [c for c in chunks if c.section == "Manual > Embedding details"]
    assert len(long_chunks) >= 5
    assert all(c.text.endswith(".") for c in long_chunks[:-1])  # cut at sentence ends, not mid-word


def test_windows_overlap_and_cover_the_whole_text(tokens) -> None:
    words = [f"w{i}" for i in range(600)]
    chunks = chunk(" ".join(words), tokens, markdown=False)
    seen = [w for c in chunks for w in c.text.split()]
    assert set(seen) == set(words)  # nothing lost
    assert len(seen) > len(words)  # consecutive chunks share an overlap
    for before, after in itertools.pairwise(chunks):
        assert after.text.split()[0] in before.text.split()


def test_chunks_carry_identity_and_position(tokens) -> None:
    chunks = chunk("# T\n\n" + "\n\n".join(f"## S{i}\n\n" + "text " * 40 for i in range(4)), tokens)
    assert [c.chunk_index for c in chunks] == list(range(len(chunks)))
    assert {c.chunks_per_doc for c in chunks} == {len(chunks)}
    assert {c.source_uri for c in chunks} == {"kb/doc.md"}
    assert len({c.content_hash for c in chunks}) == len(chunks)


def test_small_sections_share_a_chunk(tokens) -> None:
    text = "# T\n\n## A\n\nalpha.\n\n## B\n\nbeta.\n\n## C\n\ngamma."
    (only,) = chunk(text, tokens)
    assert "## A" in only.text and "## C" in only.text


def test_a_one_line_megabyte_is_cut_into_bounded_chunks(tokens) -> None:
    line = "lorem ipsum dolor sit amet " * 40_000  # ~1 MB, no newline
    chunks = chunk(line, tokens, markdown=False, size=256)
    assert all(c.token_count <= 256 for c in chunks)
    assert len(chunks) > 100


def test_same_text_gives_the_same_chunks(tokens) -> None:
    text = "# A\n\n" + "Stable content. " * 200
    assert chunk(text, tokens) == chunk(text, tokens)
