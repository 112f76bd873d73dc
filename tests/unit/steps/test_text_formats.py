from __future__ import annotations

import re

import pytest

from genai_pipeline.steps.text_formats import (
    MARKUP_SUFFIXES,
    DecodedText,
    DocumentRejected,
    decode_text,
    structured_by_headings,
    to_markdown,
    too_large,
)

CAP = 100_000

# Excerpts of Latin-1 files shipped in Debian's /usr/share/doc (ed's AUTHORS, groff's and make's NEWS).
ED_AUTHORS = b"The original info page and GNUification of the code were graciously provided\nby Fran\xe7ois Pinard.\n"
GROFF_NEWS = (
    b"Pic\n---\n\n"
    b"o Heinz-J\xfcrgen \xd6rtel contributed code for two new keywords, `xslanted' and\n"
    b"  `yslanted', which can change the shape of boxes into arbitrary\n"
    b"  parallelograms.\n\n"
    b"o Another preprocessor from Bernd Warken to pretty-print Pinyin syllables\n"
    b"  like `guo2wang2' as `gu\xf3w\xe1ng'.\n"
)
MAKE_NEWS = (
    b"  * This is the VMS port of GNU Make done by Hartmut.Becker@compaq.com.\n\n"
    b"    It is based on the specific version 3.77k and on 3.78.1. 3.77k was done\n"
    b"    by Klaus K\xe4mpf <kkaempf@rmi.de>, the code was based on the VMS port of\n"
    b"    GNU Make 3.60 by Mike Moretti.\n"
)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (ED_AUTHORS, "by François Pinard."),
        (GROFF_NEWS, "Heinz-Jürgen Örtel contributed"),
        (GROFF_NEWS, "`guówáng'"),
        (MAKE_NEWS, "by Klaus Kämpf <kkaempf@rmi.de>"),
        (b"Caf\xe9 cr\xe8me br\xfbl\xe9e, na\xefve r\xe9sum\xe9\n", "Café crème brûlée, naïve résumé\n"),
    ],
)
def test_latin1_documents_read_as_latin1(data: bytes, expected: str) -> None:
    # charset-normalizer alone picks cp850 ("Franþois") or cp1250 ("crčme") for these.
    decoded = decode_text(data, max_bytes=CAP)
    assert expected in decoded.text
    assert decoded.encoding == "iso8859-1"


def test_windows_1252_smart_quotes_and_dashes() -> None:
    decoded = decode_text(b"\x93Quoted\x94 \x96 it\x92s the author\x92s \x85 note\n", max_bytes=CAP)
    assert decoded == DecodedText("\u201cQuoted\u201d \u2013 it\u2019s the author\u2019s \u2026 note\n", "cp1252")


def test_cyrillic_is_not_forced_into_windows_1252() -> None:
    text = "Привет, мир! Это простой текст на русском языке, чтобы проверить кодировку.\n"
    decoded = decode_text(text.encode("cp1251"), max_bytes=CAP)
    assert decoded == DecodedText(text, "cp1251")


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        ("\ufeffCafé ✓\n".encode(), "utf-8"),
        ("Café ✓\n".encode(), "utf-8"),
        ("\ufeffCafé ✓\n".encode("utf-16-le"), "utf-16-le"),
        ("\ufeffCafé ✓\n".encode("utf-16-be"), "utf-16-be"),
        ("\ufeffCafé ✓\n".encode("utf-32-le"), "utf-32-le"),
    ],
)
def test_unicode_with_or_without_bom(data: bytes, encoding: str) -> None:
    assert decode_text(data, max_bytes=CAP) == DecodedText("Café ✓\n", encoding)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "^empty file$"),
        (b"\xef\xbb\xbf", "^empty file$"),
        (b"  \n\t \r\n", "^only whitespace$"),
        ("\ufeff \n".encode("utf-16-le"), "^only whitespace$"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00", "^binary content: NUL byte at offset 8$"),
        (b"text\x00more", "^binary content: NUL byte at offset 4$"),
        (bytes(range(1, 32)) * 10, r"^binary content: \d+ control characters in 310$"),
        (b"\xff\xfe\x00\xd8", "^not text: .*UTF-16-LE"),
        (bytes(range(0x80, 0x100)) * 3, "^not text: no encoding decodes it"),
    ],
)
def test_unusable_bytes_are_refused_with_the_reason(data: bytes, reason: str) -> None:
    with pytest.raises(DocumentRejected, match=reason):
        decode_text(data, max_bytes=CAP)


def test_too_large_names_the_setting_to_raise() -> None:
    with pytest.raises(DocumentRejected, match="too large: 1,001 bytes, over the 1,000-byte cap") as error:
        decode_text(b"x" * 1001, max_bytes=1000)
    assert "PIPELINE_INGEST__MAX_DOCUMENT_BYTES" in str(error.value)
    assert str(error.value) == too_large(1001, 1000)


def _headings(markdown: str) -> list[str]:
    """ATX heading lines outside code fences: where the chunker cuts."""
    headings, in_fence = [], False
    for line in markdown.splitlines():
        if line.startswith(("```", "~~~")):
            in_fence = not in_fence
        elif not in_fence and re.match(r"#{1,6}\s", line):
            headings.append(line)
    return headings


HTML = """<!DOCTYPE html>
<html><head><title>Browser tab title</title><style>body { color: red }</style>
<script>trackVisitor("secret-script-text")</script></head>
<body>
<nav><a href="/">Home</a> | <a href="/about">About us</a></nav>
<!-- build 1234 -->
<h1>Install <em>Guide</em></h1>
<p>Read the <a href="https://example.com/docs">full docs</a> first &amp; keep snake_case names.</p>
<p># of nodes must be odd.</p>
<h2>Requirements</h2>
<ul><li>Python 3.11</li><li>Weaviate<ul><li>with modules</li></ul></li></ul>
<table><tr><th>Key</th><th>Value</th></tr><tr><td>cpu</td><td>2</td></tr></table>
<h3>Build</h3>
<pre><code># compile it
make all</code></pre>
<img src="diagram.png" alt="Architecture diagram">
<script>more("secret-script-text")</script>
</body></html>
"""


def test_html_becomes_markdown_with_atx_headings_and_no_tags() -> None:
    markdown = to_markdown(HTML, ".html")
    assert _headings(markdown) == ["# Install *Guide*", "## Requirements", "### Build"]
    assert "secret-script-text" not in markdown
    assert "color: red" not in markdown
    assert "About us" not in markdown
    assert "build 1234" not in markdown
    assert "Browser tab title" not in markdown  # the page has its own H1
    assert not re.search(r"</?[a-zA-Z][^>]*>", markdown)
    assert "Read the full docs first & keep snake_case names." in markdown
    assert "https://example.com" not in markdown
    assert "\\# of nodes must be odd." in markdown  # a paragraph must not become a heading
    assert "- Python 3.11" in markdown
    assert "  - with modules" in markdown
    assert "| cpu | 2 |" in markdown
    assert "```\n# compile it\nmake all\n```" in markdown
    assert "Architecture diagram" in markdown


def test_html_without_h1_gets_its_title_as_h1() -> None:
    markdown = to_markdown("<html><head><title>Release notes</title></head><body><p>Fixed.</p></body></html>", ".HTM")
    assert markdown.startswith("# Release notes\n\nFixed.")


RST = """\
==========
User Guide
==========

Intro with *emphasis* and a `link <https://example.com>`_.

.. contents::

Installing
==========

Run ``make_all``.

From source
-----------

Build it::

    # not a heading
    make

Configuring
===========

Set the options.
"""


def test_rst_sections_become_headings_by_level() -> None:
    markdown = to_markdown(RST, ".rst")
    assert _headings(markdown) == ["# User Guide", "## Installing", "### From source", "## Configuring"]
    assert "Intro with *emphasis* and a link." in markdown
    assert "Run `make_all`." in markdown
    assert "```\n# not a heading\nmake\n```" in markdown
    assert "Contents" not in markdown  # the generated table of contents is navigation
    assert "<" not in markdown


def test_rst_without_a_title_starts_at_level_one() -> None:
    markdown = to_markdown("Alpha\n=====\n\nText.\n\nBeta\n====\n\nSub\n---\n\nMore.\n", ".rest")
    assert _headings(markdown) == ["# Alpha", "# Beta", "## Sub"]


def test_rst_subtitle_stays_a_heading() -> None:
    assert to_markdown("Title\n=====\n\nPart\n----\n\nText.\n", ".rst") == "# Title\n\n## Part\n\nText.\n"


def test_rst_never_reads_files_nor_prints(capsys: pytest.CaptureFixture[str]) -> None:
    rst = """\
Title
=====

.. include:: /etc/passwd

.. csv-table:: Users
   :file: /etc/passwd

.. raw:: html

   <script>alert("raw-html")</script>

.. no-such-directive:: x

Unbalanced *emphasis and a `broken link_.

Kept text.
"""
    markdown = to_markdown(rst, ".rst")
    assert "root:" not in markdown
    assert "raw-html" not in markdown
    assert "Kept text." in markdown
    captured = capsys.readouterr()
    assert captured.err == ""
    assert captured.out == ""


@pytest.mark.parametrize(
    ("text", "suffix", "reason"),
    [
        ("<html><script>only()</script><style>p{}</style></html>", ".html", "no text left after converting HTML"),
        ("<div>" * 5000 + "deep" + "</div>" * 5000, ".xhtml", "could not convert HTML to Markdown"),
        (".. include:: /etc/passwd\n", ".rst", "no text left after converting reStructuredText"),
    ],
)
def test_unconvertible_markup_is_rejected_with_a_reason(text: str, suffix: str, reason: str) -> None:
    with pytest.raises(DocumentRejected, match=reason):
        to_markdown(text, suffix)


def test_other_text_is_unchanged() -> None:
    text = "<b>not html</b>\n\nTitle\n=====\n"
    assert to_markdown(text, ".txt") == text
    assert to_markdown(text, ".md") == text


def test_which_suffixes_are_structured_by_headings() -> None:
    assert sorted(MARKUP_SUFFIXES) == [".htm", ".html", ".rest", ".rst", ".xhtml"]
    assert all(structured_by_headings(s) for s in [".md", ".markdown", ".mdx", ".HTML", ".rst"])
    assert not any(structured_by_headings(s) for s in [".txt", ".py", ".csv", ""])
