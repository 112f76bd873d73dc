"""Example posts as chat fine-tuning examples, asked the way generation asks a model.

A post is a text file whose first line is its title and the rest its body; the group folder it sits in
(``short/``, ``long/``) is part of the prompt, so one model learns to write each kind. A body may end with a
``## Sources`` section of numbered sources, each a ``[n] title | section`` line and its text; the body's
sentences then cite them as ``[n]``, and the example is generation's prompt (steps/prompt.py): the request,
the instructions and the fenced sources, answered by the cited body. Training, scoring and generation build
their prompts with :func:`~genai_pipeline.steps.prompt.build_messages`, so a model is asked the way it was taught.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any

import fsspec

from genai_pipeline.config import Settings
from genai_pipeline.steps import finetune_store as layout
from genai_pipeline.steps import lineage
from genai_pipeline.steps.context import StepContext
from genai_pipeline.steps.contracts import DatasetRef, FormatSummary, Formatted, GroupTask, RunRequest
from genai_pipeline.steps.documents import resolve_root
from genai_pipeline.steps.finetune_store import sha256
from genai_pipeline.steps.keys import safe_name
from genai_pipeline.steps.post_quality import citations, split_sentences
from genai_pipeline.steps.prompt import Source, build_messages
from genai_pipeline.steps.text_formats import DocumentRejected, decode_text, too_large

log = logging.getLogger(__name__)
SOURCES_HEADING = "## Sources"
_SOURCE_LINE = re.compile(r"^\[(\d+)\]\s*(.*)$")


@dataclass(frozen=True)
class Post:
    """One example post; with sources, its body cites them as ``[n]``."""

    title: str
    body: str
    sources: tuple[Source, ...] = ()


def example_messages(system_prompt: str, group: str, post: Post) -> list[dict[str, Any]]:
    """The chat example of a post: generation's prompt for its title and sources, answered by its body."""
    return build_messages(system_prompt, group, post.title, post.sources, answer=post.body)


def parse_post(data: bytes, *, max_bytes: int, name: str = "") -> Post:
    """Title, body and sources of a post file, or :class:`DocumentRejected` saying why it cannot be one.

    ``name`` (the file's label) becomes the sources' URI.
    """
    text = decode_text(data, max_bytes=max_bytes).text.replace("\r\n", "\n")
    title, _, rest = text.strip().partition("\n")
    lines = rest.split("\n")
    heading = next((i for i, line in enumerate(lines) if line.strip() == SOURCES_HEADING), len(lines))
    title, body = title.strip().lstrip("#").strip(), "\n".join(lines[:heading]).strip()
    if not title:
        raise DocumentRejected("empty: a post needs a title on its first line")
    if not body:
        raise DocumentRejected("no body: a post needs text after its title line")
    if heading == len(lines):
        return Post(title, body)
    sources = _parse_sources(lines[heading + 1 :], name)
    _check_citations(body, len(sources))
    return Post(title, body, sources)


def _parse_sources(lines: list[str], name: str) -> tuple[Source, ...]:
    """The numbered sources under a post's ``## Sources`` heading: ``[n] title | section`` lines and their text."""
    blocks: list[tuple[int, str, list[str]]] = []
    for line in lines:
        header = _SOURCE_LINE.match(line.strip())
        if header:
            blocks.append((int(header.group(1)), header.group(2).strip(), []))
        elif blocks:
            blocks[-1][2].append(line)
        elif line.strip():
            raise DocumentRejected(f"{SOURCES_HEADING} must start with a [1] title | section line")
    if not blocks:
        raise DocumentRejected(f"{SOURCES_HEADING} lists no source: give each as a [n] title | section line")
    sources = []
    for expected, (number, header, text) in enumerate(blocks, start=1):
        if number != expected:
            raise DocumentRejected(f"source [{number}] is out of order: number the sources [1], [2], ... in order")
        title, _, section = header.partition("|")
        body = " ".join(" ".join(text).split())  # one text: a wrapped line is no sentence break for the gate
        if not title.strip() or not body:
            raise DocumentRejected(f"source [{number}] needs a title on its [n] line and text below it")
        sources.append(
            Source(uri=name, chunk_index=number, section=section.strip(), title=title.strip(), text=body, distance=0.0)
        )
    return tuple(sources)


def _check_citations(body: str, sources: int) -> None:
    """Every sentence of a post with sources cites one of them, and no citation names a source it lacks."""
    for number, sentence in enumerate(split_sentences(body), start=1):
        cited = citations(sentence)
        unknown = [n for n in cited if not 1 <= n <= sources]
        if unknown:
            raise DocumentRejected(f"sentence {number} cites [{unknown[0]}], but the post lists {sources} source(s)")
        if not cited:
            raise DocumentRejected(f"sentence {number} cites no source, as every sentence must: {sentence[:60]!r}")


class ExamplesUnavailableError(RuntimeError):
    """An example folder is missing or holds no group folders: nothing is formatted, nothing is replaced."""


def _split_roots(settings: Settings) -> dict[str, str]:
    return {"train": settings.fine_tune.train_examples, "validation": settings.fine_tune.validation_examples}


def _group_folders(split: str, root: str) -> tuple[Any, str, list[str]]:
    fs, base = fsspec.core.url_to_fs(resolve_root(root))
    if not fs.isdir(base):
        raise ExamplesUnavailableError(f"{split} examples: folder {root} does not exist")
    groups = sorted(
        p.rstrip("/").rsplit("/", 1)[-1]
        for p in fs.ls(base, detail=False)
        if fs.isdir(p) and not _hidden(p.rstrip("/").rsplit("/", 1)[-1])
    )
    if not groups:
        raise ExamplesUnavailableError(f"{split} examples: {root} has no group folders (such as short/ and long/)")
    return fs, base, groups


def _hidden(relpath: str) -> bool:
    """Whether any part of a path below a split or group folder starts with a dot (left out, as in ingestion)."""
    return any(part.startswith(".") for part in relpath.strip("/").split("/"))


def list_groups(ctx: StepContext, request: RunRequest) -> list[GroupTask]:
    """One task per group folder of both splits; the run's list is stored for the report."""
    settings = ctx.settings
    run_key = safe_name(request.run_id)
    tasks = [
        GroupTask(run_key=run_key, split=split, group=group, label=f"{split}/{group}")
        for split, root in _split_roots(settings).items()
        for group in _group_folders(split, root)[2]
    ]
    ctx.store.write_json(layout.format_run(run_key), [t.label for t in tasks])
    return tasks


def format_group(ctx: StepContext, task: GroupTask) -> Formatted:
    """Every file of one group as chat examples, each line remembering its file and line for the gate.

    A ``.txt``/``.md`` post becomes one example; a ``.jsonl`` file's lines are taken as they are, so the gate
    reports a bad line with the user's own file and line number. A file that cannot be a post is listed with
    its reason and the rest of the group goes on.
    """
    settings = ctx.settings
    fs, base, _ = _group_folders(task.split, _split_roots(settings)[task.split])
    folder = f"{base.rstrip('/')}/{task.group}"
    rows: list[dict[str, Any]] = []
    files: list[dict[str, Any]] = []
    rejected: list[dict[str, str]] = []
    used: list[DatasetRef] = []  # the files the examples came from, for the lineage
    for path in sorted(p for p in fs.find(folder) if not _hidden(p[len(folder) + 1 :])):
        name = f"{task.label}/{path[len(folder) + 1 :]}"
        data = fs.cat_file(path)
        before = len(rows)
        try:
            if path.endswith(".jsonl"):
                rows.extend(_jsonl_rows(name, data, max_bytes=settings.ingest.max_document_bytes))
            else:
                post = parse_post(data, max_bytes=settings.ingest.max_document_bytes, name=name)
                record = {"messages": example_messages(settings.fine_tune.system_prompt, task.group, post)}
                rows.append({"source": name, "line": 1, "text": json.dumps(record)})
        except DocumentRejected as error:
            rejected.append({"file": name, "reason": str(error)})
            continue
        files.append({"file": name, "sha256": sha256(data), "examples": len(rows) - before})
        used.append(lineage.location(fs.unstrip_protocol(path)))
    store = ctx.store
    formatted = layout.formatted(task.split, task.group)
    store.write_jsonl(formatted, rows)
    manifest = {"run_id": task.run_key, "split": task.split, "group": task.group, "files": files, "rejected": rejected}
    store.write_json(layout.formatted(task.split, task.group, ".manifest.json"), manifest)
    for item in rejected:
        log.warning("example %s left out: %s", item["file"], item["reason"])
    return Formatted(
        **task.model_dump(),
        examples=len(rows),
        rejected=len(rejected),
        lineage=lineage.lineage(
            lineage.bounded(used, folders=[lineage.location(fs.unstrip_protocol(folder))]),
            [lineage.store_file(settings, formatted)],
        ),
    )


def _jsonl_rows(name: str, data: bytes, *, max_bytes: int) -> list[dict[str, Any]]:
    if len(data) > max_bytes:
        raise DocumentRejected(too_large(len(data), max_bytes))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise DocumentRejected(f"not valid UTF-8 (line {line}); a JSONL file of examples must be UTF-8") from None
    return [
        {"source": name, "line": number, "text": raw}
        for number, raw in enumerate(text.splitlines(), start=1)
        if raw.strip()
    ]


def format_report(ctx: StepContext, request: RunRequest) -> FormatSummary:
    """Publish this run's groups as the formatted set the gate reads (groups removed since are dropped)."""
    store = ctx.store
    run_key = safe_name(request.run_id)
    labels = store.read_json(layout.format_run(run_key))
    examples = {"train": 0, "validation": 0}
    rejected: list[dict[str, str]] = []
    for label in labels:
        split, group = label.split("/", 1)
        key = layout.formatted(split, group, ".manifest.json")
        manifest = store.read_json(key) if store.exists(key) else {"run_id": None}
        if manifest["run_id"] != run_key:
            raise RuntimeError(f"{label} was not formatted by this run; its formatting task did not finish")
        examples[split] += sum(f["examples"] for f in manifest["files"])
        rejected.extend(manifest["rejected"])
    store.write_json(layout.FORMATTED_INDEX, {"run_id": request.run_id, "groups": labels})
    return FormatSummary(run_key=run_key, examples=examples, groups=labels, rejected=rejected[:50])
