"""Token-aware, Markdown-aware chunking.

Markdown is cut at headings first, so a chunk never straddles two topics unless both fit whole;
each chunk keeps its heading path as context (prepended when embedding). Long sections are split
into windows of at most ``size`` tokens that end at the best nearby break (paragraph, sentence,
line, word) and overlap the previous window by ``overlap`` tokens.
"""

from __future__ import annotations

import bisect
import hashlib
import re
from dataclasses import asdict, dataclass

from genai_pipeline.models.tokens import TokenSpans

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_SENTENCE_END = re.compile(r"[.!?][\"')\]]?\s")
# Break preferences, best first; a window ends after the last one found in its second half.
_BREAKS = ("\n\n", _SENTENCE_END, "\n", " ")


@dataclass(frozen=True)
class Section:
    """Text under one heading, with the headings above it."""

    headings: tuple[str, ...]
    text: str


@dataclass(frozen=True)
class Chunk:
    """One retrievable piece of a document, with everything needed to cite and to replace it."""

    source_uri: str
    title: str
    section: str
    text: str
    chunk_index: int
    chunks_per_doc: int
    content_hash: str
    token_count: int

    @property
    def embedding_text(self) -> str:
        """What the model embeds: the heading path gives a short chunk its topic."""
        return f"{self.section}\n{self.text}" if self.section else self.text

    def to_dict(self) -> dict[str, object]:
        """JSON form for the shared store."""
        return asdict(self)


def split_markdown(text: str) -> list[Section]:
    """Cut Markdown at ATX headings (not inside code fences); each section keeps its heading line."""
    sections: list[Section] = []
    path: list[tuple[int, str]] = []
    lines: list[str] = []
    in_fence = False

    def flush() -> None:
        body = "\n".join(lines).strip()
        if body:
            sections.append(Section(tuple(title for _, title in path), body))
        lines.clear()

    for line in text.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
        heading = None if in_fence else _HEADING.match(line)
        if heading:
            flush()
            level = len(heading.group(1))
            path = [(lvl, title) for lvl, title in path if lvl < level] + [(level, heading.group(2))]
        lines.append(line)
    flush()
    return sections


def chunk_text(
    text: str,
    *,
    source_uri: str,
    title: str,
    markdown: bool,
    tokens: TokenSpans,
    size: int,
    overlap: int,
) -> list[Chunk]:
    """Split a document into chunks of at most ``size`` tokens (heading context included)."""
    sections = split_markdown(text) if markdown else [Section((), text.strip())]
    pieces: list[tuple[str, str]] = []  # (section path, text)
    pending: list[Section] = []
    pending_tokens = 0

    def flush_pending() -> None:
        nonlocal pending_tokens
        if pending:
            pieces.append((" > ".join(pending[0].headings[:-1] or pending[0].headings), _join(pending)))
        pending.clear()
        pending_tokens = 0

    for section in sections:
        context = " > ".join(section.headings)
        budget = max(size - tokens.count(context) - 1, size // 2) if context else size
        section_tokens = tokens.count(section.text)
        if section_tokens > budget:
            flush_pending()
            pieces.extend((context, window) for window in _windows(section.text, tokens, budget, overlap))
            continue
        # Small neighbouring sections share a chunk; their heading lines stay inline in the text.
        if pending and pending_tokens + section_tokens + 1 > budget:
            flush_pending()
        pending.append(section)
        pending_tokens += section_tokens + 1
    flush_pending()

    total = len(pieces)
    return [
        Chunk(
            source_uri=source_uri,
            title=title,
            section=context,
            text=piece,
            chunk_index=index,
            chunks_per_doc=total,
            content_hash=hashlib.sha256(piece.encode()).hexdigest(),
            token_count=tokens.count(f"{context}\n{piece}" if context else piece),
        )
        for index, (context, piece) in enumerate(pieces)
    ]


def _join(sections: list[Section]) -> str:
    return "\n\n".join(section.text for section in sections)


def _windows(text: str, tokens: TokenSpans, budget: int, overlap: int) -> list[str]:
    spans = tokens.spans(text)
    starts = [start for start, _ in spans]
    windows: list[str] = []
    first = 0
    while first < len(spans):
        last = min(first + budget, len(spans))  # exclusive
        if last < len(spans):
            low = spans[first + budget // 2][0]
            cut = _best_break(text, low, spans[last - 1][1])
            if cut is not None:
                last = max(bisect.bisect_left(starts, cut), first + 1)
        windows.append(text[spans[first][0] : spans[last - 1][1]].strip())
        if last >= len(spans):
            break
        first = _word_start(text, starts, max(last - overlap, first + 1), last)
    return [window for window in windows if window]


def _best_break(text: str, low: int, high: int) -> int | None:
    """Index of the whitespace after the preferred break in ``text[low:high]``, if any.

    Cutting *at* the whitespace (not after it) sends a BPE token that carries a leading space, like
    " Sentence", to the next window instead of leaving it dangling at the end of this one.
    """
    region = text[low:high]
    for pattern in _BREAKS:
        if isinstance(pattern, str):
            found = region.rfind(pattern)
            if found > 0:
                return low + found
        else:
            matches = list(pattern.finditer(region))
            if matches:
                return low + matches[-1].end() - 1
    return None


def _word_start(text: str, starts: list[int], index: int, limit: int) -> int:
    """Move an overlap start forward to the first token that begins a word (not ``##piece``)."""
    for candidate in range(index, limit):
        at = starts[candidate]
        if at == 0 or not text[at - 1].isalnum():
            return candidate
    return index
