"""Turning a document's bytes into text, and HTML or reStructuredText into Markdown.

Real corpora hold files in legacy encodings (the Latin-1 NEWS files of groff, make and libxslt), UTF-16
exports and markup. The chunker cuts Markdown at ATX headings, so markup is converted to Markdown first:
its sections become the chunks' heading paths instead of being lost in tag soup.
"""

from __future__ import annotations

import codecs
import io
import re
from dataclasses import dataclass

import charset_normalizer
from bs4 import BeautifulSoup, Comment, Declaration, Doctype, ProcessingInstruction
from docutils.core import publish_parts
from docutils.writers.html5_polyglot import Writer as Html5Writer
from markdownify import MarkdownConverter

MARKDOWN_SUFFIXES = frozenset({".md", ".markdown", ".mdx"})
HTML_SUFFIXES = frozenset({".html", ".htm", ".xhtml"})
RST_SUFFIXES = frozenset({".rst", ".rest"})
# Suffixes :func:`to_markdown` converts.
MARKUP_SUFFIXES = HTML_SUFFIXES | RST_SUFFIXES
# Share of control characters (other than tab/newline/CR/form feed) above which text is called binary.
BINARY_CONTROL_SHARE = 0.05

# UTF-32 first: its little-endian mark starts with UTF-16's.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f]")
_C1_BYTES = re.compile(rb"[\x80-\x9f]")
# Elements whose content is never document text.
_DROPPED_TAGS = (
    "head",
    "title",
    "script",
    "style",
    "nav",
    "noscript",
    "template",
    "iframe",
    "svg",
    "canvas",
    "object",
    "embed",
    "button",
    "select",
    "input",
    "textarea",
)
# Text that would start a heading or a code fence for the chunker if it began a line.
_MARKDOWN_LINE_START = re.compile(r"^(\s*)(#{1,6}(?=\s|$)|```|~~~)", re.MULTILINE)
_BLANK_LINES = re.compile(r"\n{3,}")
_DOCUTILS_SETTINGS = {
    # Never read files: no include/csv-table :file:, no raw HTML, no docutils.conf from the machine.
    "file_insertion_enabled": False,
    "raw_enabled": False,
    "_disable_config": True,
    # Markup errors are tolerated silently: nothing on stderr, nothing raised.
    "report_level": 5,
    "halt_level": 5,
    "traceback": True,
    "embed_stylesheet": False,
    "stylesheet_path": "",
    "stylesheet": "",
    "output_encoding": "unicode",
}


class DocumentRejected(ValueError):
    """A document that is not usable text; the message is the reason shown to users."""


@dataclass(frozen=True)
class DecodedText:
    """A document's text and the encoding it was read in (Python's codec name, e.g. ``utf-8``)."""

    text: str
    encoding: str


def decode_text(data: bytes, *, max_bytes: int) -> DecodedText:
    """Decode a document's bytes, or raise :class:`DocumentRejected` saying why they are not text.

    UTF-8 (with or without BOM) is tried first and costs one C-level decode; UTF-16/32 need a BOM;
    anything else goes through legacy-encoding detection (:func:`_decode_legacy`).
    """
    if len(data) > max_bytes:
        raise DocumentRejected(too_large(len(data), max_bytes))
    if not data:
        raise DocumentRejected("empty file")
    decoded = _decode_with_bom(data)
    if decoded is None:
        nul = data.find(b"\x00")
        if nul >= 0:
            raise DocumentRejected(f"binary content: NUL byte at offset {nul}")
        try:
            decoded = DecodedText(data.decode("utf-8-sig"), "utf-8")
        except UnicodeDecodeError:
            decoded = _decode_legacy(data)
    text = decoded.text
    if not text or text.isspace():
        raise DocumentRejected("only whitespace" if text else "empty file")
    control = len(_CONTROL.findall(text))
    if control > BINARY_CONTROL_SHARE * len(text):
        raise DocumentRejected(f"binary content: {control} control characters in {len(text)}")
    return decoded


def too_large(size: int, max_bytes: int) -> str:
    """The reason given for a document over the size cap, naming the setting that raises it."""
    return (
        f"too large: {size:,} bytes, over the {max_bytes:,}-byte cap "
        "(raise PIPELINE_INGEST__MAX_DOCUMENT_BYTES to accept it)"
    )


def _decode_with_bom(data: bytes) -> DecodedText | None:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return DecodedText(data[len(bom) :].decode(encoding), encoding)
            except UnicodeDecodeError as error:
                raise DocumentRejected(
                    f"not text: starts with a {encoding.upper()} byte-order mark but byte {error.start + len(bom)} "
                    f"is not valid {encoding.upper()}"
                ) from None
    return None


def _decode_legacy(data: bytes) -> DecodedText:
    """Decode bytes that are not UTF-8, with charset-normalizer's help and a bias to Windows-1252.

    charset-normalizer judges a decoding by how messy its text looks, and most legacy documentation is
    ASCII with a few accented names. There every single-byte code page looks equally clean, and its pick
    is arbitrary: cp1250 for "Café crème" (giving "crčme"), cp850 for "François" ("Franþois"), even
    Big5 for make's NEWS ("Klaus Kämpf" becomes "K鄝pf"). So Windows-1252 (a superset of Latin-1's
    printable range) wins whenever its text passes the same mess check and looks no messier than the
    best guess, or reads more like a language. Cyrillic, Greek or Central-European text read as
    Windows-1252 is a run of symbols and accents that fails the mess check, so those keep their guess.
    """
    best = charset_normalizer.from_bytes(data).best()
    western = charset_normalizer.from_bytes(data, cp_isolation=["cp1252"]).best()
    candidates = []
    if western is not None and (best is None or western.chaos <= best.chaos or western.coherence > best.coherence):
        # Without bytes 0x80-0x9F, Windows-1252 and Latin-1 read the same: name the older, usual one.
        candidates.append("cp1252" if _C1_BYTES.search(data) else "iso8859-1")
    if best is not None:
        candidates.append(best.encoding)
    # charset-normalizer judges samples of a large file; the whole of it must decode too.
    for encoding in candidates:
        try:
            return DecodedText(data.decode(encoding), codecs.lookup(encoding).name)
        except UnicodeDecodeError:
            continue
    raise DocumentRejected("not text: no encoding decodes it (not UTF-8, and no legacy encoding fits)")


def structured_by_headings(suffix: str) -> bool:
    """Whether a file with this suffix is Markdown, as written or after :func:`to_markdown`."""
    suffix = suffix.lower()
    return suffix in MARKDOWN_SUFFIXES or suffix in MARKUP_SUFFIXES


def to_markdown(text: str, suffix: str) -> str:
    """Convert HTML or reStructuredText to Markdown with ATX headings; other text is returned unchanged.

    Raises :class:`DocumentRejected` when the markup cannot be converted or leaves no text.
    """
    suffix = suffix.lower()
    if suffix in HTML_SUFFIXES:
        kind, convert = "HTML", _html_to_markdown
    elif suffix in RST_SUFFIXES:
        kind, convert = "reStructuredText", _rst_to_markdown
    else:
        return text
    try:
        markdown = convert(text)
    except DocumentRejected:
        raise
    except Exception as error:
        raise DocumentRejected(f"could not convert {kind} to Markdown: {type(error).__name__}: {error}"[:300]) from None
    if not markdown.strip():
        raise DocumentRejected(f"no text left after converting {kind} to Markdown")
    return markdown


def _html_to_markdown(html: str) -> str:
    soup = BeautifulSoup(html, "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    _clean(soup)
    if title and soup.find("h1") is None:
        heading = soup.new_tag("h1")
        heading.string = title
        (soup.body or soup).insert(0, heading)
    return _markdown(soup)


def _rst_to_markdown(rst: str) -> str:
    parts = publish_parts(
        rst, writer=Html5Writer(), settings_overrides={**_DOCUTILS_SETTINGS, "warning_stream": io.StringIO()}
    )
    soup = BeautifulSoup(parts["html_body"], "html.parser")
    # A lone section right under the title is promoted to a subtitle: it is still the second level.
    for subtitle in soup.select("p.subtitle"):
        subtitle.name = "h2"
    for literal in soup.select("span.literal"):
        literal.name = "code"
    # Without a document title, sections start at <h2>: lift them so the top level is "#".
    levels = [int(tag.name[1]) for tag in soup.find_all(re.compile(r"^h[1-6]$"))]
    if levels and (shift := min(levels) - 1):
        for tag in soup.find_all(re.compile(r"^h[1-6]$")):
            tag.name = f"h{int(tag.name[1]) - shift}"
    _clean(soup)
    return _markdown(soup)


def _clean(soup: BeautifulSoup) -> None:
    """Drop what is not document text; keep links' and images' words, not their targets."""
    for node in soup.find_all(string=lambda s: isinstance(s, (Comment, Declaration, Doctype, ProcessingInstruction))):
        node.extract()
    for tag in soup.find_all(_DROPPED_TAGS):
        tag.decompose()
    for image in soup.find_all("img"):
        alt = (image.get("alt") or "").strip()
        if alt:
            image.replace_with(alt)
        else:
            image.decompose()
    for link in soup.find_all("a"):
        link.unwrap()


def _markdown(soup: BeautifulSoup) -> str:
    markdown = _Converter(heading_style="ATX", bullets="-", escape_asterisks=False, escape_underscores=False)
    text = markdown.convert_soup(soup)
    lines = "\n".join(line.rstrip() for line in text.strip().splitlines())
    return _BLANK_LINES.sub("\n\n", lines) + "\n"


class _Converter(MarkdownConverter):
    """markdownify, escaping only what would change how the chunker reads the text.

    Asterisks and underscores stay as written (``snake_case`` is text, not emphasis, for embedding);
    a paragraph starting with "# " or a code fence must not become a heading or a fence.
    """

    def escape(self, text: str, parent_tags: set[str]) -> str:
        text = super().escape(text, parent_tags)
        text = _MARKDOWN_LINE_START.sub(r"\1\\\2", text)
        if "td" in parent_tags or "th" in parent_tags:
            text = text.replace("|", r"\|")
        return text
