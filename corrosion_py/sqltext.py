"""SQL text as SQLite reads it, without parsing it: the one scanner of the project.

Three questions are asked of SQL text before SQLite runs it: what a statement's first keyword
is (a local transaction admits only some kinds), where the statements of a script end (the CLI
and schema files), and which names and words a definition holds (the schema rules compare
column definitions token by token). All three rest on `scan`.

Rules (SQLite's lexer, as far as these questions need it):

- Tokens are whitespace, comments (``-- ...`` to the end of the line, ``/* ... */``, an
  unterminated one running to the end of the text), strings (``'...'`` with ``''`` inside, and
  blobs ``x'..'``), quoted identifiers (``"..."``, ```...```, ``[...]``), words (letters, digits,
  ``_`` and ``$``) and single punctuation characters. A quote that never closes is punctuation:
  the statement is then incomplete and SQLite says why.
- A script's statements end at the semicolons where `sqlite3.complete_statement` (SQLite's own
  rule) says the text so far is complete: a semicolon in a string, a comment or the body of a
  ``CREATE TRIGGER ... BEGIN ... END`` does not end one. Empty statements (``;;``, comments
  only) are skipped; the last one may lack its semicolon.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from typing import Literal

import attrs

__all__ = [
    "Statement",
    "Token",
    "dequote",
    "first_word",
    "one_line",
    "scan",
    "statements",
    "tokens",
]

TokenKind = Literal["space", "comment", "string", "ident", "word", "punct"]

# The grammar, one pattern per token kind; `scan` and `first_word` are compiled from it.
_SPACE = r"\s+"
_COMMENT = r"--[^\n]*|/\*.*?(?:\*/|\Z)"
_STRING = r"[xX]'[^']*'|'(?:[^']|'')*'"
_IDENT = r'"(?:[^"]|"")*"|`(?:[^`]|``)*`|\[[^\]]*\]'
_WORD = r"[\w$]+"
_TOKEN_RE = re.compile(
    rf"(?P<space>{_SPACE})|(?P<comment>{_COMMENT})|(?P<string>{_STRING})|(?P<ident>{_IDENT})"
    rf"|(?P<word>{_WORD})|(?P<punct>.)",
    re.DOTALL,
)
# Whitespace and comments, then the first significant token, captured when it is a word (a
# string is tried first, as in the scan: x'00' is a blob): the hot path of local transactions,
# one match per statement and no token objects.
_FIRST_WORD_RE = re.compile(rf"(?:{_SPACE}|{_COMMENT})*(?:{_STRING}|({_WORD}))?", re.DOTALL)
_INSIGNIFICANT = ("space", "comment")


@attrs.frozen
class Token:
    """One token: its kind, its text and where it is in the scanned text."""

    kind: TokenKind
    text: str
    start: int
    end: int

    @property
    def norm(self) -> str:
        """Case-insensitive and quote-insensitive form, for comparing definitions."""
        if self.kind == "word":
            return self.text.upper()
        if self.kind == "ident":
            return dequote(self.text).upper()
        return self.text


def scan(text: str) -> Iterator[Token]:
    """Every token of ``text``, whitespace and comments included, in order."""
    for m in _TOKEN_RE.finditer(text):
        kind: TokenKind = m.lastgroup  # type: ignore[assignment]
        yield Token(kind, m.group(), m.start(), m.end())


def tokens(text: str) -> list[Token]:
    """The significant tokens (no whitespace, no comments)."""
    return [t for t in scan(text) if t.kind not in _INSIGNIFICANT]


def first_word(sql: str) -> str:
    """The statement's first keyword in upper case (its kind: ``INSERT``, ``WITH``, ...), or ""
    when it starts with something else or holds only whitespace and comments."""
    match = _FIRST_WORD_RE.match(sql)
    word = match.group(1) if match else None
    return word.upper() if word else ""


def dequote(name: str) -> str:
    """An identifier without its quotes (``"a""b"`` -> ``a"b``; ``[x]`` -> ``x``)."""
    if len(name) >= 2 and name[0] in '"`[':
        inner = name[1:-1]
        return inner if name[0] == "[" else inner.replace(name[0] * 2, name[0])
    return name


def one_line(sql: str, limit: int = 200) -> str:
    """The statement on one line, without comments, shortened for a message."""
    flat = " ".join("".join(" " if t.kind == "comment" else t.text for t in scan(sql)).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


@attrs.frozen
class Statement:
    """One statement of a script: its text from its first token to its last one before the
    semicolon (comments around it dropped, those inside kept), the 1-based line where it
    starts, and whether a semicolon ended it (only the last one of a script may lack it)."""

    text: str
    line: int
    terminated: bool

    def with_semicolon(self) -> str:
        """The text as a script would hold it (a ``;`` after a terminated statement)."""
        return self.text + ";" if self.terminated else self.text


def statements(text: str) -> list[Statement]:
    """The statements of a script, cut at the semicolons that end complete statements."""
    out: list[Statement] = []
    first: Token | None = None
    last_end = 0
    for tok in scan(text):
        if tok.kind in _INSIGNIFICANT:
            continue
        if tok.kind == "punct" and tok.text == ";":
            if first is None:
                continue  # an empty statement
            if sqlite3.complete_statement(text[first.start : tok.end]):
                out.append(_statement(text, first, last_end, terminated=True))
                first = None
                continue
        if first is None:
            first = tok
        last_end = tok.end
    if first is not None:
        out.append(_statement(text, first, last_end, terminated=False))
    return out


def _statement(text: str, first: Token, end: int, *, terminated: bool) -> Statement:
    line = text.count("\n", 0, first.start) + 1
    return Statement(text[first.start : end], line, terminated)
