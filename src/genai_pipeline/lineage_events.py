"""Answers from captured OpenLineage events: which documents and examples produced a model or a post.

The file transport writes one event per file (``<home>/lineage`` by default; a JSON-lines file works too).
Each completed step task is a run with the datasets it read and wrote; walking from a dataset to the run that
wrote it, then to that run's inputs, ends at what no step wrote: the documents, the example files and the base
model. A file the pipeline rewrites (a group's JSONL, the champion record) is traced through the run that
wrote it last before the reading run started. The knowledge base's collection grows with every load, so a
walk that reaches it names it and stops (tracing the collection itself lists every document ever loaded).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Key = tuple[str, str]
# Where a walk stops: datasets every run adds to rather than rewrites.
CUMULATIVE_NAMESPACES = ("weaviate://",)
# What a leaf is, by the step that read it.
SOURCE_KINDS = {
    "chunk": "documents",
    "generate_post": "documents",
    "format_examples": "examples",
    "submit_fine_tune": "base models",
}


class LineageNotFound(LookupError):
    """Nothing in the events matches what was asked for."""


@dataclass(frozen=True)
class StepRun:
    """One completed step task: its job (``dag.task``), the Airflow run, when, and its datasets."""

    job: str
    dag_run: str | None
    started: datetime.datetime
    completed: datetime.datetime
    inputs: tuple[Key, ...]
    outputs: tuple[Key, ...]

    @property
    def step(self) -> str:
        """The task id without its DAG and task group."""
        return self.job.rsplit(".", 1)[-1]


def read_events(folder: Path) -> list[dict[str, Any]]:
    """Every event under ``folder``: files of one JSON event each, or JSON lines. Unreadable lines are skipped."""
    events: list[dict[str, Any]] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []:
        text = path.read_text(errors="replace")
        try:
            events.append(json.loads(text))
            continue
        except json.JSONDecodeError:
            pass
        for line in text.splitlines():
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return [e for e in events if isinstance(e, dict) and "run" in e and "job" in e]


def _time(value: str) -> datetime.datetime:
    parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


def _keys(datasets: Iterable[dict[str, Any]] | None) -> tuple[Key, ...]:
    return tuple((d["namespace"], d["name"]) for d in datasets or ())


def step_runs(events: Iterable[dict[str, Any]]) -> list[StepRun]:
    """Completed task runs with datasets, from their START and COMPLETE events."""
    started: dict[str, datetime.datetime] = {}
    complete: dict[str, dict[str, Any]] = {}
    for event in events:
        run_id, kind = event["run"].get("runId"), event.get("eventType")
        if kind == "START":
            started[run_id] = _time(event["eventTime"])
        elif kind == "COMPLETE" and (event.get("inputs") or event.get("outputs")):
            complete[run_id] = event
    runs = []
    for run_id, event in complete.items():
        completed = _time(event["eventTime"])
        airflow = event["run"].get("facets", {}).get("airflow", {})
        runs.append(
            StepRun(
                job=event["job"]["name"],
                dag_run=(airflow.get("dagRun") or {}).get("run_id"),
                started=started.get(run_id, completed),
                completed=completed,
                inputs=_keys(event.get("inputs")),
                outputs=_keys(event.get("outputs")),
            )
        )
    return sorted(runs, key=lambda r: r.completed)


@dataclass
class Answer:
    """What produced a dataset: the step runs on the way, and the sources they started from, by kind."""

    target: Key
    steps: list[StepRun] = field(default_factory=list)
    sources: dict[str, list[str]] = field(default_factory=dict)
    knowledge_bases: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON form for ``pipeline lineage --json``."""
        return {
            "target": _label(self.target),
            "sources": self.sources,
            "knowledge_bases": self.knowledge_bases,
            "steps": [
                {
                    "job": s.job,
                    "dag_run": s.dag_run,
                    "completed": s.completed.isoformat(),
                    "inputs": [_label(k) for k in s.inputs],
                    "outputs": [_label(k) for k in s.outputs],
                }
                for s in self.steps
            ],
        }


def _label(key: Key) -> str:
    namespace, name = key
    if namespace == "file":
        return name
    return f"{namespace}/{name.lstrip('/')}"


class LineageGraph:
    """The datasets of all completed step runs, and which runs wrote each."""

    def __init__(self, runs: list[StepRun]) -> None:
        self.runs = runs
        self.writers: dict[Key, list[StepRun]] = {}
        for run in runs:
            for key in run.outputs:
                self.writers.setdefault(key, []).append(run)

    @classmethod
    def from_folder(cls, folder: Path) -> LineageGraph:
        """The graph of every event the file transport wrote under ``folder``."""
        return cls(step_runs(read_events(folder)))

    def resolve(self, target: str) -> Key:
        """A written dataset by a model id, a job id, a path, a post's label, or a name's end."""
        written = list(self.writers)
        path = str(Path(target).expanduser().resolve()) if "/" in target or Path(target).exists() else None
        for wanted in (f"models/{target}", f"fine_tuning/jobs/{target}", path, target):
            exact = [k for k in written if wanted and k[1] == wanted]
            if exact:
                return exact[-1]
        ends = {k for k in written if k[1].endswith((f"/{target}", f"/{target}.md"))}
        if len(ends) == 1:
            return ends.pop()
        if ends:
            raise LineageNotFound(f"{target!r} matches several datasets: {', '.join(sorted(_label(k) for k in ends))}")
        if not written:
            raise LineageNotFound("no OpenLineage events with datasets yet: run the pipeline first")
        models = sorted(k[1].removeprefix("models/") for k in written if k[1].startswith("models/"))
        raise LineageNotFound(f"no step wrote {target!r}; models with events: {', '.join(models) or 'none'}")

    def trace(self, target: Key) -> Answer:
        """Walk from ``target`` (its current version) to the datasets no step wrote."""
        answer = Answer(target)
        seen: set[tuple[Key, datetime.datetime | None]] = set()

        def visit(key: Key, before: datetime.datetime | None, reader: str | None) -> None:
            if (key, before) in seen:
                return
            seen.add((key, before))
            writers = self.writers.get(key, [])
            if key[0].startswith(CUMULATIVE_NAMESPACES):
                if reader is not None:
                    _add(answer.knowledge_bases, _label(key))
                    return
            else:  # a rewritten file: the version the reader read, or the current one
                writers = [w for w in writers if before is None or w.completed <= before][-1:]
            if not writers:
                _add(answer.sources.setdefault(SOURCE_KINDS.get(reader or "", "other inputs"), []), _label(key))
                return
            for run in writers:
                if run not in answer.steps:
                    answer.steps.append(run)
                for source in run.inputs:
                    visit(source, run.started, run.step)

        visit(target, None, None)
        return answer


def _add(items: list[str], item: str) -> None:
    if item not in items:
        items.append(item)


def describe(answer: Answer) -> str:
    """The answer as the CLI prints it."""
    lines = [f"{_label(answer.target)}"]
    for kind in ("documents", "examples", "base models", "other inputs"):
        found = answer.sources.get(kind, [])
        if found:
            lines.append(f"  {kind:<16} {len(found)}")
            lines.extend(f"    {item}" for item in sorted(found))
    if answer.knowledge_bases:
        lines.append("  knowledge base   " + ", ".join(answer.knowledge_bases))
    lines.append(f"  steps            {len(answer.steps)} (newest first)")
    lines.extend(
        f"    {run.completed:%Y-%m-%d %H:%M:%S}  {run.job}  ({run.dag_run or 'no run id'})"
        for run in sorted(answer.steps, key=lambda r: r.completed, reverse=True)
    )
    return "\n".join(lines)
