"""Example posts become chat examples in the store: prompts, refusals with reasons, and the published index."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import example_settings, isolated_settings, write_tree
from fakes import fake_context
from genai_pipeline.config import Settings
from genai_pipeline.steps import finetune_store as layout
from genai_pipeline.steps.contracts import GroupTask, RunRequest
from genai_pipeline.steps.documents import resolve_root
from genai_pipeline.steps.examples import (
    ExamplesUnavailableError,
    Post,
    format_group,
    format_report,
    list_groups,
    parse_post,
)
from genai_pipeline.steps.finetune_store import sha256
from genai_pipeline.steps.post_quality import as_written
from genai_pipeline.steps.prompt import INSTRUCTIONS, Source, build_messages
from genai_pipeline.steps.text_formats import DocumentRejected
from genai_pipeline.store import Store

SYSTEM = "You write posts for tests."
MAX_BYTES = 2_000
POSTS = {
    "train/short/alpha.txt": "Alpha title\nAlpha body.\n",
    "train/short/beta.md": "# Beta title\n\nBeta body, line one.\nLine two.\n",
    "train/long/gamma.txt": "Gamma title\nA long body.\n\nWith two paragraphs.\n",
    "validation/short/delta.txt": "Delta title\nDelta body.\n",
}
SOURCED = (
    "Where chunks go\nChunks are written to Weaviate [2]. Each has a fingerprint [1].\n\n## Sources\n\n"
    "[1] Ingestion | Fingerprints\nEvery chunk carries\nits document's fingerprint.\n\n"
    "[2] Ingestion\nChunks are written to Weaviate.\n"
)


def make_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **env: str) -> Settings:
    """Settings from the environment only: a store and example folders under tmp_path."""
    return example_settings(
        monkeypatch,
        tmp_path,
        PIPELINE_FINE_TUNE__SYSTEM_PROMPT=SYSTEM,
        PIPELINE_INGEST__MAX_DOCUMENT_BYTES=str(MAX_BYTES),
        **env,
    )


def task(run_key: str, label: str) -> GroupTask:
    split, group = label.split("/", 1)
    return GroupTask(run_key=run_key, split=split, group=group, label=label)


def format_all(settings: Settings, run_id: str) -> list[GroupTask]:
    tasks = list_groups(fake_context(settings), RunRequest(run_id=run_id))
    for item in tasks:
        format_group(fake_context(settings), item)
    return tasks


def rows(settings: Settings, label: str) -> list[dict]:
    split, group = label.split("/", 1)
    return list(Store(settings.store).iter_jsonl(layout.formatted(split, group)))


def manifest(settings: Settings, label: str) -> dict:
    split, group = label.split("/", 1)
    return Store(settings.store).read_json(layout.formatted(split, group, ".manifest.json"))


def stored_files(settings: Settings) -> list[Path]:
    root = Path(settings.store)
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


# -- the prompt and the post --------------------------------------------------------------------------------


def test_parse_post_splits_the_title_line_from_the_body() -> None:
    assert parse_post(b"Title\nBody line.\n", max_bytes=MAX_BYTES) == Post("Title", "Body line.")
    post = parse_post(b"\r\n# Markdown title \r\n\r\nFirst.\r\nSecond.\r\n\r\n", max_bytes=MAX_BYTES)
    assert post == Post("Markdown title", "First.\nSecond.")


def test_parse_post_reads_the_numbered_sources_below_the_body() -> None:
    post = parse_post(SOURCED.encode(), max_bytes=MAX_BYTES, name="train/short/chunks.txt")
    assert (post.title, post.body) == (
        "Where chunks go",
        "Chunks are written to Weaviate [2]. Each has a fingerprint [1].",
    )
    assert post.sources == (
        Source(
            "train/short/chunks.txt",
            1,
            "Fingerprints",
            "Ingestion",
            "Every chunk carries its document's fingerprint.",
            0.0,
        ),
        Source("train/short/chunks.txt", 2, "", "Ingestion", "Chunks are written to Weaviate.", 0.0),
    )


@pytest.mark.parametrize(
    ("sources", "reason"),
    [
        ("", "## Sources lists no source"),
        ("Some text first.\n[1] T\nText.\n[2] U\nText.", "## Sources must start with a \\[1\\] title"),
        ("[1] T\nText.\n[3] U\nText.", "source \\[3\\] is out of order"),
        ("[1] T\nText.\n[2] U\n", "source \\[2\\] needs a title on its \\[n\\] line and text below it"),
        ("[1] | Section\nText.\n[2] U\nText.", "source \\[1\\] needs a title"),
        ("[1] T\nText.", "sentence 2 cites \\[2\\], but the post lists 1 source"),
    ],
)
def test_a_post_whose_sources_do_not_match_its_citations_is_refused(sources: str, reason: str) -> None:
    data = f"Title\nFirst [1]. Second [2].\n\n## Sources\n{sources}\n".encode()
    with pytest.raises(DocumentRejected, match=reason):
        parse_post(data, max_bytes=MAX_BYTES)


def test_with_sources_every_sentence_of_the_body_must_cite_one() -> None:
    data = b"Title\nCited [1]. Not cited at all.\n\n## Sources\n[1] T\nText.\n"
    with pytest.raises(
        DocumentRejected, match=re.escape("sentence 2 cites no source, as every sentence must: 'Not cited at all.'")
    ):
        parse_post(data, max_bytes=MAX_BYTES)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file"),
        (b"   \n\n", "only whitespace"),
        (b"Only a title\n", "no body"),
        (b"#\nbody without a title", "empty: a post needs a title"),
        (b"\x00\x01\xff\xfebinary", "binary content"),
        (b"Title\n" + b"x" * MAX_BYTES, "too large"),
    ],
)
def test_parse_post_refuses_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(DocumentRejected, match=reason):
        parse_post(data, max_bytes=MAX_BYTES)


# -- formatting a group -------------------------------------------------------------------------------------


def test_a_post_file_becomes_system_user_assistant_with_its_group(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write_tree(tmp_path / "examples", POSTS)
    settings = make_settings(monkeypatch, tmp_path)
    tasks = format_all(settings, "run-1")
    assert [t.label for t in tasks] == ["train/long", "train/short", "validation/short"]

    short = rows(settings, "train/short")
    assert [(r["source"], r["line"]) for r in short] == [("train/short/alpha.txt", 1), ("train/short/beta.md", 1)]
    assert json.loads(short[1]["text"]) == {
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": "Write a short post titled: Beta title"},
            {"role": "assistant", "content": "Beta body, line one.\nLine two."},
        ]
    }
    (long,) = rows(settings, "train/long")
    messages = json.loads(long["text"])["messages"]
    assert messages[1]["content"] == "Write a long post titled: Gamma title"
    assert messages[2]["content"] == "A long body.\n\nWith two paragraphs."


def test_a_post_with_sources_becomes_generations_prompt_answered_by_its_cited_body(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write_tree(tmp_path / "examples", {**POSTS, "train/short/chunks.txt": SOURCED})
    settings = make_settings(monkeypatch, tmp_path)
    format_group(fake_context(settings), task("run-1", "train/short"))
    (row,) = [r for r in rows(settings, "train/short") if r["source"] == "train/short/chunks.txt"]
    post = parse_post(SOURCED.encode(), max_bytes=MAX_BYTES)
    # Generation asks with build_messages(system, group, topic, sources): the example is that, plus the body.
    assert json.loads(row["text"])["messages"] == build_messages(
        SYSTEM, "short", "Where chunks go", post.sources, answer=post.body
    )
    assert (
        "<<<SOURCE 2 | Ingestion | >>>\nChunks are written to Weaviate."
        in json.loads(row["text"])["messages"][1]["content"]
    )


def test_unusable_files_are_refused_with_a_reason_and_the_rest_of_the_group_is_formatted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write_tree(
        tmp_path / "examples",
        {
            **POSTS,
            "train/short/empty.txt": b"",
            "train/short/title-only.txt": "Nothing but a title\n",
            "train/short/binary.txt": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe",
            "train/short/huge.txt": "Huge title\n" + "word " * MAX_BYTES,
        },
    )
    settings = make_settings(monkeypatch, tmp_path)
    formatted = format_group(fake_context(settings), task("run-1", "train/short"))
    assert (formatted.examples, formatted.rejected) == (2, 4)

    stored = manifest(settings, "train/short")
    reasons = {item["file"]: item["reason"] for item in stored["rejected"]}
    assert sorted(reasons) == [
        "train/short/binary.txt",
        "train/short/empty.txt",
        "train/short/huge.txt",
        "train/short/title-only.txt",
    ]
    assert reasons["train/short/empty.txt"] == "empty file"
    assert reasons["train/short/title-only.txt"].startswith("no body")
    assert reasons["train/short/binary.txt"].startswith("binary content")
    assert reasons["train/short/huge.txt"].startswith("too large")
    root = tmp_path / "examples" / "train" / "short"
    assert stored["files"] == [
        {"file": "train/short/alpha.txt", "sha256": sha256((root / "alpha.txt").read_bytes()), "examples": 1},
        {"file": "train/short/beta.md", "sha256": sha256((root / "beta.md").read_bytes()), "examples": 1},
    ]
    assert stored["run_id"] == "run-1" and (stored["split"], stored["group"]) == ("train", "short")
    assert [r["source"] for r in rows(settings, "train/short")] == ["train/short/alpha.txt", "train/short/beta.md"]


def test_a_jsonl_files_lines_are_kept_as_written_with_their_own_line_numbers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    good = json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})
    write_tree(
        tmp_path / "examples",
        {**POSTS, "train/short/chat.jsonl": f"{good}\n\n   \nnot json at all\r\n{good}\n"},
    )
    settings = make_settings(monkeypatch, tmp_path)
    formatted = format_group(fake_context(settings), task("run-1", "train/short"))
    chat = [r for r in rows(settings, "train/short") if r["source"] == "train/short/chat.jsonl"]
    # Blank lines are dropped but do not shift the numbers; bad lines are kept for the gate to report.
    assert [(r["line"], r["text"]) for r in chat] == [(1, good), (4, "not json at all"), (5, good)]
    assert formatted.examples == 5 and formatted.rejected == 0
    entry = next(f for f in manifest(settings, "train/short")["files"] if f["file"].endswith("chat.jsonl"))
    assert entry["examples"] == 3


def test_a_jsonl_file_that_is_not_utf8_is_refused_naming_the_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write_tree(tmp_path / "examples", {**POSTS, "train/short/latin.jsonl": b'{"a": 1}\n{"b": "caf\xe9"}\n'})
    settings = make_settings(monkeypatch, tmp_path)
    assert format_group(fake_context(settings), task("run-1", "train/short")).rejected == 1
    (item,) = manifest(settings, "train/short")["rejected"]
    assert item["file"] == "train/short/latin.jsonl" and "line 2" in item["reason"]


@pytest.mark.parametrize("missing", ["train", "validation"])
def test_a_missing_split_folder_raises_naming_it_and_writes_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, missing: str
) -> None:
    write_tree(tmp_path / "examples", POSTS)
    nowhere = tmp_path / "nowhere" / missing
    settings = make_settings(monkeypatch, tmp_path, **{f"PIPELINE_FINE_TUNE__{missing.upper()}_EXAMPLES": str(nowhere)})
    with pytest.raises(ExamplesUnavailableError, match=f"{missing} examples: folder {nowhere} does not exist"):
        list_groups(fake_context(settings), RunRequest(run_id="run-1"))
    label = "train/short" if missing == "train" else "validation/short"
    with pytest.raises(ExamplesUnavailableError, match=str(nowhere)):
        format_group(fake_context(settings), task("run-1", label))
    assert stored_files(settings) == []


def test_a_split_folder_without_group_folders_is_unavailable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_tree(tmp_path / "examples", {**POSTS, "bare/loose.txt": "Loose\nNot in a group.\n"})
    settings = make_settings(
        monkeypatch, tmp_path, PIPELINE_FINE_TUNE__VALIDATION_EXAMPLES=str(tmp_path / "examples/bare")
    )
    with pytest.raises(ExamplesUnavailableError, match="has no group folders"):
        list_groups(fake_context(settings), RunRequest(run_id="run-1"))
    assert stored_files(settings) == []


def test_hidden_files_and_group_folders_are_skipped(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_tree(
        tmp_path / "examples",
        {
            **POSTS,
            "train/short/.draft.txt": "Draft\nNot ready.\n",
            "train/short/.DS_Store": b"\x00\x00\x00\x01Bud1",
            "train/.trash/old.txt": "Old\nGone.\n",
        },
    )
    settings = make_settings(monkeypatch, tmp_path)
    tasks = list_groups(fake_context(settings), RunRequest(run_id="run-1"))
    assert [t.label for t in tasks] == ["train/long", "train/short", "validation/short"]
    formatted = format_group(fake_context(settings), task("run-1", "train/short"))
    assert (formatted.examples, formatted.rejected) == (2, 0)
    assert [f["file"] for f in manifest(settings, "train/short")["files"]] == [
        "train/short/alpha.txt",
        "train/short/beta.md",
    ]


def test_files_inside_a_hidden_folder_of_a_group_are_skipped(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_tree(tmp_path / "examples", {**POSTS, "train/short/.notes/idea.txt": "Idea\nA private note.\n"})
    settings = make_settings(monkeypatch, tmp_path)
    format_group(fake_context(settings), task("run-1", "train/short"))
    assert [f["file"] for f in manifest(settings, "train/short")["files"]] == [
        "train/short/alpha.txt",
        "train/short/beta.md",
    ]


def test_list_groups_gives_readable_labels_and_stores_the_runs_list(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write_tree(tmp_path / "examples", POSTS)
    settings = make_settings(monkeypatch, tmp_path)
    run_id = "manual__2025-01-02T03:04:05+00:00"
    tasks = list_groups(fake_context(settings), RunRequest(run_id=run_id))
    assert [(t.split, t.group, t.label) for t in tasks] == [
        ("train", "long", "train/long"),
        ("train", "short", "train/short"),
        ("validation", "short", "validation/short"),
    ]
    run_key = "manual__2025-01-02T03_04_05_00_00"
    assert {t.run_key for t in tasks} == {run_key}
    assert Store(settings.store).read_json(layout.format_run(run_key)) == [t.label for t in tasks]


# -- the report ---------------------------------------------------------------------------------------------


def test_format_report_publishes_this_runs_groups_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_tree(tmp_path / "examples", {**POSTS, "train/short/empty.txt": b""})
    settings = make_settings(monkeypatch, tmp_path)
    store = Store(settings.store)
    format_all(settings, "run-1")
    first = format_report(fake_context(settings), RunRequest(run_id="run-1"))
    assert first.groups == ["train/long", "train/short", "validation/short"]
    assert first.examples == {"train": 3, "validation": 1}
    assert first.rejected == [{"file": "train/short/empty.txt", "reason": "empty file"}]
    assert store.read_json(layout.FORMATTED_INDEX) == {"run_id": "run-1", "groups": first.groups}

    # The long group is removed from disk: the next run neither lists nor publishes it.
    (tmp_path / "examples" / "train" / "long" / "gamma.txt").unlink()
    (tmp_path / "examples" / "train" / "long").rmdir()
    format_all(settings, "run-2")
    second = format_report(fake_context(settings), RunRequest(run_id="run-2"))
    assert second.groups == ["train/short", "validation/short"]
    assert second.examples == {"train": 2, "validation": 1}
    assert store.read_json(layout.FORMATTED_INDEX) == {"run_id": "run-2", "groups": second.groups}


def test_format_report_refuses_a_group_formatted_by_another_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write_tree(tmp_path / "examples", POSTS)
    settings = make_settings(monkeypatch, tmp_path)
    store = Store(settings.store)
    format_all(settings, "run-1")
    format_report(fake_context(settings), RunRequest(run_id="run-1"))

    # run-2 formats only some of its groups: train/long still holds run-1's output.
    tasks = list_groups(fake_context(settings), RunRequest(run_id="run-2"))
    for item in tasks:
        if item.label != "train/long":
            format_group(fake_context(settings), item)
    with pytest.raises(RuntimeError, match="train/long was not formatted by this run"):
        format_report(fake_context(settings), RunRequest(run_id="run-2"))
    assert store.read_json(layout.FORMATTED_INDEX)["run_id"] == "run-1"


# -- the shipped examples -----------------------------------------------------------------------------------


def test_the_shipped_examples_format_without_rejections_and_splits_share_no_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    if not Path(resolve_root("package://genai_pipeline/examples/train")).is_dir():
        pytest.skip("the package's examples/train folder is not there yet")
    settings = isolated_settings(monkeypatch, tmp_path)
    assert settings.fine_tune.train_examples == "package://genai_pipeline/examples/train"
    assert settings.fine_tune.validation_examples == "package://genai_pipeline/examples/validation"

    tasks = format_all(settings, "shipped")
    summary = format_report(fake_context(settings), RunRequest(run_id="shipped"))
    assert summary.rejected == []
    assert summary.examples["train"] > 0 and summary.examples["validation"] > 0
    hashes: dict[str, set[str]] = {"train": set(), "validation": set()}
    for item in tasks:
        stored = manifest(settings, item.label)
        assert stored["rejected"] == []
        assert all(f["examples"] == 1 for f in stored["files"])
        hashes[item.split] |= {f["sha256"] for f in stored["files"]}
    assert hashes["train"].isdisjoint(hashes["validation"])
    # Nor the same post under another name: no assistant answer is in both splits.
    answers = {
        split: {
            json.loads(r["text"])["messages"][-1]["content"]
            for t in tasks
            if t.split == split
            for r in rows(settings, t.label)
        }
        for split in ("train", "validation")
    }
    assert answers["train"].isdisjoint(answers["validation"])


def test_every_shipped_example_is_asked_with_sources_and_each_sentence_is_grounded_in_the_one_it_cites() -> None:
    """The examples teach what the gate and the score check: with MiniLM, each sentence's source supports it."""
    from genai_pipeline.models.embeddings import make_embedder

    embed, quality = make_embedder(Settings()).embed, Settings().generation.quality
    root = Path(resolve_root("package://genai_pipeline/examples"))
    paths = sorted(root.glob("*/*/*.txt"))
    assert len(paths) >= 18
    for path in paths:
        post = parse_post(path.read_bytes(), max_bytes=MAX_BYTES * 10)
        assert post.sources, f"{path.name} lists no sources"
        assert INSTRUCTIONS in build_messages(SYSTEM, path.parent.name, post.title, post.sources)[1]["content"]
        sentences = as_written(post.body, [s.text for s in post.sources], embed, quality)
        assert sentences and all(s.grounded for s in sentences), (path.name, [(s.text, s.support) for s in sentences])
