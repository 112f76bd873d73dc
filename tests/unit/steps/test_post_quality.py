"""The post quality gate: each rule on its own, then the support threshold with the real embedder.

The rules run with a fake embedder whose similarities the test sets; the threshold is calibrated with the
collection's own embedder (MiniLM) on hand-written pairs.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest

from genai_pipeline.config import PostQualitySettings, Settings
from genai_pipeline.steps.post_quality import check_post, loops, split_sentences, terms

SETTINGS = PostQualitySettings(min_sentences=1)
SOURCES = ["Chunks are embedded with MiniLM. Vectors go to Weaviate.", "Posts are written as Markdown files."]


def topic_embed(texts: list[str]) -> np.ndarray:
    """A fake embedder: one axis per topic word, so a sentence is similar to what shares its topic words."""
    axes = ("embedded", "markdown", "weaviate", "banana")
    rows = np.array([[1.0 if axis in t.lower() else 0.0 for axis in axes] + [0.1] for t in texts])
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_sentences_split_at_full_stops_and_lines_keeping_a_trailing_citation() -> None:
    text = "# Title\nFirst one [1]. Second one. [2] Third?\n- a list item [1].\nCalled `x.y` twice."
    assert split_sentences(text) == [
        "First one [1].",
        "Second one. [2]",
        "Third?",
        "a list item [1].",
        "Called `x.y` twice.",
    ]


def test_hard_wrapped_lines_are_one_sentence_and_markup_lines_are_not_prose() -> None:
    """What a small model copies from reStructuredText sources (Django's docs, bench/generate.py)."""
    text = (
        "Custom backends\n---------------\n\nWhen you load a custom backend, it is only made available to\n"
        "the current template [4].\n\n::\n\n.. _Gunicorn: https://gunicorn.org/\n- one item that wraps\n"
        "  onto a second line\n- another item."
    )
    assert split_sentences(text) == [
        "Custom backends",
        "When you load a custom backend, it is only made available to the current template [4].",
        "one item that wraps onto a second line",
        "another item.",
    ]


def test_fragments_and_a_sentence_cut_off_by_the_token_limit_are_removed() -> None:
    post = (
        "Custom backends [1]\n\n- :func:`django.utils.translation.gettext_noop` [1]\n\n"
        "Chunks are embedded with MiniLM [1]. Posts are written as Markdown [2]. Posts are written as"
    )
    result = check_post(post, SOURCES, topic_embed, SETTINGS)
    assert [s.flags for s in result.sentences] == [["fragment"], ["fragment"], [], [], ["unfinished"]]
    assert result.text == "Chunks are embedded with MiniLM [1]. Posts are written as Markdown [2]."
    assert result.figures()["fragments_removed"] == 3


def test_a_supported_cited_post_is_published_as_written() -> None:
    post = "Chunks are embedded with MiniLM [1]. Posts are Markdown files [2]."
    result = check_post(post, SOURCES, topic_embed, SETTINGS)
    assert result.status == "published" and result.reasons == []
    assert result.text == post
    assert result.figures()["supported_share"] == 1.0


def test_a_repeated_sentence_is_cut() -> None:
    post = "Chunks are embedded [1]. Posts are Markdown [2]. Chunks  are EMBEDDED [1]."
    result = check_post(post, SOURCES, topic_embed, SETTINGS)
    assert result.text == "Chunks are embedded [1]. Posts are Markdown [2]."
    assert result.figures()["repetitions_removed"] == 1


def test_a_reworded_repeat_is_cut() -> None:
    """The demo's loop: one sentence frame with a different subject each time."""
    post = "The Architecture is hardened with the same secrets [1]. The Security is hardened with the same secrets [1]."
    result = check_post(
        post, ["The architecture and the security are hardened with the same secrets."], topic_embed, SETTINGS
    )
    assert [s.flags for s in result.sentences] == [[], ["repeated"]]


def test_a_looping_sentence_is_cut() -> None:
    loop = "The vectors are embedded and the vectors are embedded and the vectors are embedded [1]."
    assert loops(loop, 4) and not loops("Chunks are embedded with MiniLM.", 4)
    assert loops("The step runs as a pod, so it runs as a pod and the volume.", 4)
    result = check_post(f"Chunks are embedded [1]. {loop}", SOURCES, topic_embed, SETTINGS)
    assert result.text == "Chunks are embedded [1]."
    assert [s.flags for s in result.sentences] == [[], ["loop"]]


def test_an_uncited_sentence_is_repaired_with_the_source_that_supports_it() -> None:
    result = check_post("Chunks are embedded with MiniLM. Posts are Markdown [2].", SOURCES, topic_embed, SETTINGS)
    assert result.text == "Chunks are embedded with MiniLM [1]. Posts are Markdown [2]."
    assert result.figures()["citations_repaired"] == 1 and result.status == "published"


def test_an_uncited_sentence_no_source_supports_is_removed() -> None:
    result = check_post("Chunks are embedded [1]. Bananas are yellow.", SOURCES, topic_embed, SETTINGS)
    assert result.text == "Chunks are embedded [1]."
    assert result.figures()["uncited_removed"] == 1


def test_a_citation_that_names_no_source_is_dropped() -> None:
    result = check_post("Chunks are embedded [1][7].", SOURCES, topic_embed, SETTINGS)
    assert result.text == "Chunks are embedded [1]."
    assert result.figures()["invalid_citations_dropped"] == 1


def test_a_cited_sentence_its_source_does_not_support_sends_the_post_to_review() -> None:
    result = check_post("Chunks are embedded [1]. Bananas are yellow [2].", SOURCES, topic_embed, SETTINGS)
    assert result.status == "needs_review"
    assert result.figures()["supported_share"] == 0.5
    assert ["unsupported"] in [s.flags for s in result.sentences]
    assert "50% of sentences supported" in result.reasons[0]


def test_a_cited_sentence_that_another_source_supports_is_re_cited() -> None:
    result = check_post("Posts are written as Markdown [1].", SOURCES, topic_embed, SETTINGS)
    assert result.text == "Posts are written as Markdown [2]." and result.status == "published"


def test_code_terms_no_cited_source_names_are_invented() -> None:
    """The demo's invented runtime modes: similar in topic to the source, but naming what it never says."""
    sources = ["Set `PIPELINE_RUNTIME__MODE` to embedded or kubernetes; chunks are embedded."]
    assert terms("Use `noscan` with PIPELINE_RUNTIME__MODE or steps.generation.") == {
        "noscan",
        "pipeline_runtime__mode",
        "steps.generation",
    }
    post = "Chunks are embedded [1]. PIPELINE_RUNTIME__MODE can be `noscan` when embedded [1]."
    result = check_post(post, sources, topic_embed, SETTINGS)
    assert [s.flags for s in result.sentences] == [[], ["invented_terms"]]
    assert result.status == "needs_review"


def test_length_bounds_send_a_post_to_review() -> None:
    short = check_post("Chunks are embedded [1].", SOURCES, topic_embed, PostQualitySettings(min_sentences=2))
    assert short.status == "needs_review" and "fewer than 2" in short.reasons[0]
    long = check_post(
        "Chunks are embedded [1]. " * 1, SOURCES, topic_embed, PostQualitySettings(max_words=10, min_sentences=1)
    )
    assert long.status == "published"
    longer = check_post(
        "Chunks are embedded with MiniLM and stored [1]. Posts are written as Markdown files on disk [2].",
        SOURCES,
        topic_embed,
        PostQualitySettings(max_words=10, min_sentences=1),
    )
    assert longer.status == "needs_review" and "more than 10" in longer.reasons[0]


def test_a_post_of_nothing_but_loops_is_not_published() -> None:
    loop = "The knowledge base is written to a volume [1]."
    result = check_post(" ".join([loop] * 6), SOURCES, topic_embed, PostQualitySettings())
    assert result.figures()["repetitions_removed"] == 5
    assert result.status == "needs_review"


# Calibration of support_threshold with the real embedder (all-MiniLM-L6-v2): paraphrases of what a chunk says,
# and sentences about the same project that the chunk does not say.
CHUNK = "src/genai_pipeline/sample_kb/ingestion.md"
SUPPORTED = [
    "A source is a named folder, either a local path or an fsspec URL.",
    "Files larger than the maximum document size are rejected before they are read.",
    "Empty files and files holding only whitespace are rejected with a reason.",
    "Names that start with a dot are skipped during the scan.",
    "The ingestion DAG is incremental: each run does only the work that changes since the previous run require.",
    "A file that is not valid UTF-8 is rejected and the reason names the bad byte.",
]
NOT_SUPPORTED = [
    # What the demo's fine-tuned SmolLM2 wrote, citing this chunk: source words, a claim the source does not make.
    "The KnowledgeBase Ingestion is written to a shared volume, so the volumes are read-only.",
    "The model server trains SmolLM2 with AdamW on the CPU.",
    "Champion and challenger models are compared on held-out examples.",
    "Posts are written in Markdown with front matter.",
    "The fine-tuning job is cost-gated before it is submitted.",
    "Airflow deploys the scheduler with Helm.",
]


@cache
def minilm():
    from genai_pipeline.models.embeddings import make_embedder

    return make_embedder(Settings())


@pytest.mark.parametrize(("sentence", "expected"), [(s, True) for s in SUPPORTED] + [(s, False) for s in NOT_SUPPORTED])
def test_the_threshold_separates_what_a_chunk_says_from_what_it_does_not(sentence: str, expected: bool) -> None:
    chunk = (Path(__file__).parents[3] / CHUNK).read_text()[:1500]
    result = check_post(f"{sentence[:-1]} [1].", [chunk], minilm().embed, PostQualitySettings(min_sentences=1))
    [checked] = result.sentences
    assert (checked.support >= PostQualitySettings().support_threshold) is expected, checked.support
