"""Chat-format fine-tuning data: one ``{"messages": [...]}`` object per JSONL line.

Used by the fine-tuning step before upload and by the model server on upload, so a bad line is
reported with its number in both places.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

ROLES = {"system", "user", "assistant", "tool"}


class InvalidTrainingLine(ValueError):
    """A line that is not a valid chat example; ``line`` is 1-based."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


def parse_example(text: str, line: int) -> list[dict[str, Any]]:
    """Messages of one JSONL line, or :class:`InvalidTrainingLine` saying what is wrong."""
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidTrainingLine(line, f"not valid JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(record, dict) or not isinstance(record.get("messages"), list) or not record["messages"]:
        raise InvalidTrainingLine(line, 'expected an object with a non-empty "messages" list')
    for position, message in enumerate(record["messages"], start=1):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise InvalidTrainingLine(line, f"message {position} needs a role of {', '.join(sorted(ROLES))}")
        if not isinstance(message.get("content"), str) or not message["content"].strip():
            raise InvalidTrainingLine(line, f"message {position} needs non-empty text content")
    if not any(m["role"] == "assistant" for m in record["messages"]):
        raise InvalidTrainingLine(line, "no assistant message to learn from")
    return record["messages"]


def iter_examples(lines: Iterable[bytes]) -> Iterator[list[dict[str, Any]]]:
    """Examples of JSONL lines one at a time, so a file can be checked without reading it whole.

    The first bad line raises; blank lines are allowed, but not a file without examples.
    """
    found = False
    for number, raw in enumerate(lines, start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidTrainingLine(number, "not valid UTF-8") from None
        if text.strip():
            found = True
            yield parse_example(text, number)
    if not found:
        raise InvalidTrainingLine(1, "the file holds no examples")


def parse_chat_jsonl(data: bytes) -> list[list[dict[str, Any]]]:
    """Every example of a file; the first bad line raises. Blank lines are allowed."""
    return list(iter_examples(data.splitlines()))
