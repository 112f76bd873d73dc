"""The quality gate on every post: cited, supported, no loops, a sane length, whatever model wrote it.

Small models loop and invent; a post must not be published as fine because a model produced text. The gate
reads the post sentence by sentence:

- **Repetition.** A sentence said before, or reworded from one said before (most of its words the same), is cut,
  and so is a sentence that loops (one word n-gram twice within it).
- **Fragments.** Soft-wrapped lines are joined and markup lines (reST directives, heading underlines) dropped
  first. A "sentence" with fewer than ``min_sentence_words`` words of prose (a heading, a bare `identifier`) and a
  last sentence the token limit cut off are removed.
- **Citations.** Every sentence must cite one of the post's sources as ``[n]``. Numbers that name no source are
  dropped. A sentence left without a citation is repaired (it cites the source that supports it best) or, when
  no source supports it, removed.
- **Support.** A cited sentence must be supported by the chunk it cites: the cosine similarity of its embedding
  to the chunk's closest sentence, with the collection's own embedder, reaches a threshold
  (``PostQualitySettings.support_threshold``, calibrated in tests/unit/steps/test_post_quality.py). A sentence
  that names code-like terms (backticked words, ``UPPER_CASE`` or ``snake_case`` identifiers) absent from every
  source it cites invents them, whatever the similarity says.
- **Verdict.** A post whose kept sentences are supported at the configured share and whose length is within
  bounds is ``published``; otherwise ``needs_review``, with a flag for every sentence that failed.

The champion/challenger score (steps/champion.py) reads a model's answers with the same citation and support
checks, as written (:func:`as_written`: nothing cut, nothing repaired). The logic is pure: the embedder is passed
in, so tests use the real MiniLM or a small fake.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from genai_pipeline.config import PostQualitySettings

# Unit-normalised embeddings of a list of texts, one row each (models.embeddings.Embedder.embed).
Embed = Callable[[list[str]], np.ndarray]
Status = Literal["published", "needs_review"]

_CITATION = re.compile(r"\s*\[(\d+)\]")
# Within a line, a sentence ends at . ! or ? before space and what starts a sentence; a line break always ends
# one (Markdown list items and headings are units of their own).
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9`\"'(\[*])")
_LEADING_CITATIONS = re.compile(r"^((?:\[\d+\]\s*)+)")
_LIST_MARKER = re.compile(r"^(?:[-*+]|\d+[.)])\s+")
# Lines of markup, not prose: reST directives and targets (".. _x:"), a bare "::", fences, heading underlines.
_MARKUP_LINE = re.compile(r"^(?:\.\. |::$|```|([=\-~^*#+`'\"])\1{2,}$)")
# A sentence's end: closing punctuation, then perhaps quotes, brackets and its citations.
_ENDED = re.compile(r"[.!?][`\"')\]]*(?:\s*\[\d+\])*$")
# Code spans and reST roles (:func:`x`), which are not words of prose.
_CODE = re.compile(r"(?::[a-z]+:)?`[^`]*`")
_WORD = re.compile(r"[a-z0-9']+")
# Terms a model cannot paraphrase: `code`, UPPER_CASE names and snake_case / dotted identifiers.
_TERM = re.compile(r"`([^`]+)`|\b([A-Z][A-Z0-9]*_[A-Z0-9_]+)\b|\b([a-z][a-z0-9]*(?:[_.][a-z0-9]+)+)\b")


@dataclass
class Sentence:
    """One sentence of a post and what the gate found."""

    text: str
    citations: list[int]
    flags: list[str] = field(default_factory=list)
    support: float = 0.0
    kept: bool = True

    @property
    def supported(self) -> bool:
        return self.kept and "unsupported" not in self.flags and "invented_terms" not in self.flags

    @property
    def grounded(self) -> bool:
        """Cited, and supported by a source it cites itself (a sentence the gate had to re-cite is not)."""
        return bool(self.citations) and self.supported and "citation_repaired" not in self.flags

    def as_dict(self) -> dict[str, Any]:
        """For a page that marks each sentence: its text without citation markers, and the gate's findings."""
        return {
            "text": _bare(self.text),
            "citations": self.citations,
            "flags": self.flags,
            "kept": self.kept,
            "support": round(self.support, 3),
        }


@dataclass
class GateResult:
    """The post as the gate leaves it, its verdict and the figures it goes by."""

    text: str
    status: Status
    sentences: list[Sentence]
    reasons: list[str]

    def figures(self) -> dict[str, Any]:
        """What the front matter records: shares over the kept sentences, counts of what was cut or repaired."""
        kept = [s for s in self.sentences if s.kept]
        flagged = Counter(flag for s in self.sentences for flag in s.flags)
        return {
            "status": self.status,
            "reasons": self.reasons,
            "sentences": len(kept),
            "supported_share": round(sum(s.supported for s in kept) / len(kept), 3) if kept else 0.0,
            "citations_valid_share": round(sum(bool(s.citations) for s in kept) / len(kept), 3) if kept else 0.0,
            "repetitions_removed": flagged["repeated"] + flagged["loop"],
            "fragments_removed": flagged["fragment"] + flagged["unfinished"],
            "uncited_removed": flagged["uncited"],
            "citations_repaired": flagged["citation_repaired"],
            "invalid_citations_dropped": flagged["invalid_citation"],
            "flags": [
                {"sentence": s.text[:160], "flags": s.flags, "support": round(s.support, 3), "kept": s.kept}
                for s in self.sentences
                if s.flags
            ],
        }


def _prose_units(text: str) -> list[str]:
    """Paragraphs and list items with their soft-wrapped lines joined; headings and markup lines left out.

    Models copy the hard-wrapped lines of their sources, so a line that does not end a sentence continues on the
    next one: "... only made available to" / "the current template." is one sentence, not two fragments.
    """
    units: list[str] = []
    joining = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or _MARKUP_LINE.match(line):
            joining = False
            continue
        item = _LIST_MARKER.match(line)
        line = _LIST_MARKER.sub("", line)
        if joining and not item:
            units[-1] += " " + line
        else:
            units.append(line)
        joining = not _ENDED.search(line)
    return units


def split_sentences(text: str) -> list[str]:
    """The post's sentences: a citation after the full stop stays with its sentence; headings are left out."""
    sentences: list[str] = []
    for unit in _prose_units(text):
        for part in _SENTENCE_END.split(unit):
            leading = _LEADING_CITATIONS.match(part)
            if leading and sentences:
                sentences[-1] += " " + leading.group(1).strip()
                part = part[leading.end() :]
            if part.strip():
                sentences.append(part.strip())
    return sentences


def prose_words(sentence: str) -> int:
    """Words of prose in a sentence, leaving out code spans, roles and citations: a bare `name` is no sentence."""
    return len(_WORD.findall(_CODE.sub(" ", _bare(sentence)).lower()))


def citations(sentence: str) -> list[int]:
    """The source numbers a sentence cites as ``[n]``, as written."""
    return [int(n) for n in _CITATION.findall(sentence)]


def _naming_a_source(citations: list[int], sources: int) -> list[int]:
    """The citations that name one of ``sources`` sources (1-based), each once, in order."""
    return [n for n in dict.fromkeys(citations) if 1 <= n <= sources]


def _bare(sentence: str) -> str:
    """The sentence without its citation markers."""
    return _CITATION.sub("", sentence).strip()


def loops(sentence: str, n: int) -> bool:
    """Whether one word n-gram occurs twice in the sentence: "runs as a pod, so it runs as a pod"."""
    words = _WORD.findall(sentence.lower())
    grams = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    return bool(grams) and max(grams.values()) >= 2


def sentence_words(sentence: str) -> set[str]:
    """The words of a sentence without its citations, as the repetition rule compares them."""
    return set(_WORD.findall(_bare(sentence).lower()))


def near_repeat(sentence: str, earlier: list[set[str]], overlap: float) -> bool:
    """Whether the sentence's words mostly (Jaccard >= overlap) are those of an earlier sentence: a reworded loop."""
    words = sentence_words(sentence)
    return any(len(words & other) / len(words | other) >= overlap for other in earlier if words | other)


def terms(text: str) -> set[str]:
    """Code-like terms a sentence names: `code`, UPPER_CASE and snake_case or dotted identifiers."""
    return {next(g for g in match.groups() if g).strip().lower() for match in _TERM.finditer(text)}


def _chunk_sentences(text: str) -> list[str]:
    return [s for s in split_sentences(text) if len(_WORD.findall(s.lower())) >= 3] or [text]


def check_post(post: str, sources: Sequence[str], embed: Embed, settings: PostQualitySettings) -> GateResult:
    """Run the gate over a post whose ``[n]`` citations name ``sources`` (chunk texts, 1-based)."""
    sentences = [Sentence(text=s, citations=citations(s)) for s in split_sentences(post)]
    said: list[set[str]] = []
    for index, sentence in enumerate(sentences):
        if prose_words(sentence.text) < settings.min_sentence_words:
            sentence.flags.append("fragment")
            sentence.kept = False
        elif index == len(sentences) - 1 and not _ENDED.search(sentence.text):
            sentence.flags.append("unfinished")  # cut off by the token limit
            sentence.kept = False
        elif near_repeat(sentence.text, said, settings.repeat_overlap):
            sentence.flags.append("repeated")
            sentence.kept = False
        elif loops(sentence.text, settings.loop_ngram):
            sentence.flags.append("loop")
            sentence.kept = False
        said.append(sentence_words(sentence.text))
        valid = _naming_a_source(sentence.citations, len(sources))
        if len(valid) < len(sentence.citations):
            sentence.flags.append("invalid_citation")
        sentence.citations = valid

    kept = [s for s in sentences if s.kept]
    if kept and sources:
        _score_support(kept, sources, embed, settings)
    for sentence in kept:
        if not sentence.citations:
            sentence.flags.append("uncited")
            sentence.kept = False

    kept = [s for s in sentences if s.kept]
    reasons = _verdict(kept, settings)
    text = " ".join(_cited(s) for s in kept)
    return GateResult(
        text=text, status="needs_review" if reasons else "published", sentences=sentences, reasons=reasons
    )


def as_written(text: str, sources: Sequence[str], embed: Embed, settings: PostQualitySettings) -> list[Sentence]:
    """Every sentence of a text as its model wrote it, for scoring the model: nothing is cut and nothing repaired.

    A sentence keeps the citations that name one of ``sources``; a cited one is checked against them with the
    gate's own support check, and :attr:`Sentence.grounded` then says whether a source it cites supports it.
    """
    sentences = [
        Sentence(text=s, citations=_naming_a_source(citations(s), len(sources))) for s in split_sentences(text)
    ]
    cited = [s for s in sentences if s.citations]
    if cited:
        _score_support(cited, sources, embed, settings)
    return sentences


def _score_support(kept: list[Sentence], sources: Sequence[str], embed: Embed, settings: PostQualitySettings) -> None:
    """Similarity of each sentence to each source (its closest sentence); re-cite, repair or flag."""
    pieces = [_chunk_sentences(text) for text in sources]
    owners = np.array([i for i, chunk in enumerate(pieces) for _ in chunk])
    vectors = embed([_bare(s.text) for s in kept] + [p for chunk in pieces for p in chunk])
    similarity = vectors[: len(kept)] @ vectors[len(kept) :].T
    best = np.full((len(kept), len(sources)), -1.0)
    for j, owner in enumerate(owners):
        best[:, owner] = np.maximum(best[:, owner], similarity[:, j])
    source_terms = [terms(text) for text in sources]
    for i, sentence in enumerate(kept):
        named = terms(sentence.text)
        cited = [n for n in sentence.citations if named <= source_terms[n - 1]]
        if sentence.citations and not cited:
            sentence.flags.append("invented_terms")
            sentence.support = float(max(best[i, n - 1] for n in sentence.citations))
            continue
        if cited:
            sentence.support = float(max(best[i, n - 1] for n in cited))
            if sentence.support >= settings.support_threshold:
                continue
        # Uncited, or its citation does not support it: the source that does, if any, and names its terms.
        candidates = [j for j in np.argsort(-best[i]) if named <= source_terms[j]]
        if candidates and best[i, candidates[0]] >= settings.support_threshold:
            sentence.citations = [int(candidates[0]) + 1]
            sentence.support = float(best[i, candidates[0]])
            sentence.flags.append("citation_repaired")
        elif sentence.citations:
            sentence.flags.append("unsupported")


def _cited(sentence: Sentence) -> str:
    """The sentence with its citations before its closing punctuation, as in "... was read [1]."."""
    bare, marks = _bare(sentence.text), "".join(f" [{n}]" for n in sentence.citations)
    return f"{bare[:-1]}{marks}{bare[-1]}" if bare[-1:] in ".!?" else f"{bare}{marks}"


def _verdict(kept: list[Sentence], settings: PostQualitySettings) -> list[str]:
    reasons = []
    if len(kept) < settings.min_sentences:
        reasons.append(f"{len(kept)} sentence(s) passed, fewer than {settings.min_sentences}")
    words = sum(len(_WORD.findall(s.text.lower())) for s in kept)
    if words > settings.max_words:
        reasons.append(f"{words} words, more than {settings.max_words}")
    if kept:
        share = sum(s.supported for s in kept) / len(kept)
        if share < settings.min_supported_share:
            reasons.append(
                f"{share:.0%} of sentences supported by the source they cite, under {settings.min_supported_share:.0%}"
            )
    return reasons
