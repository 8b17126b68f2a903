"""The one SQL-text scanner (`corrosion_py.sqltext`): tokens, first keywords, statements."""

from __future__ import annotations

import itertools
import sqlite3

from hypothesis import given
from hypothesis import strategies as st

from corrosion_py.sqltext import Statement, dequote, first_word, one_line, scan, statements, tokens


def kinds(text: str) -> list[tuple[str, str]]:
    return [(t.kind, t.text) for t in tokens(text)]


def test_tokens_of_each_kind() -> None:
    text = 'SELECT "a ""b""", `c`, [d e], ' + "'it''s', x'00ff', $v -- tail\n /* block */ ;"
    assert kinds(text) == [
        ("word", "SELECT"),
        ("ident", '"a ""b"""'),
        ("punct", ","),
        ("ident", "`c`"),
        ("punct", ","),
        ("ident", "[d e]"),
        ("punct", ","),
        ("string", "'it''s'"),
        ("punct", ","),
        ("string", "x'00ff'"),
        ("punct", ","),
        ("word", "$v"),
        ("punct", ";"),
    ]
    comments = [t.text for t in scan(text) if t.kind == "comment"]
    assert comments == ["-- tail", "/* block */"]


def test_norm_compares_words_and_identifiers_without_case_or_quotes() -> None:
    a, b, c = tokens('Name "name" [NAME]')
    assert a.norm == b.norm == c.norm == "NAME"
    (s,) = tokens("'Name'")
    assert s.norm == "'Name'"  # a string is a value: its case matters


def test_unterminated_comment_runs_to_the_end_and_an_open_quote_is_punctuation() -> None:
    assert [t.kind for t in scan("SELECT 1 /* never closed; SELECT 2")] == [
        "word",
        "space",
        "word",
        "space",
        "comment",
    ]
    assert kinds("SELECT 'abc")[:2] == [("word", "SELECT"), ("punct", "'")]


@given(st.text(alphabet=st.sampled_from(list("ab '\"`[]-/*;\n$x0(),")), max_size=60))
def test_scanning_loses_nothing(text: str) -> None:
    """Tokens cover the text exactly, in order, without gaps or overlaps."""
    toks = list(scan(text))
    assert "".join(t.text for t in toks) == text
    assert all(t.text == text[t.start : t.end] for t in toks)
    assert all(a.end == b.start for a, b in itertools.pairwise(toks))


def test_first_word_skips_whitespace_and_comments() -> None:
    assert first_word("  -- a comment\n /* another */ insert INTO t VALUES (1)") == "INSERT"
    assert first_word("WITH x AS (SELECT 1) DELETE FROM t") == "WITH"
    assert first_word("/* only a comment") == ""
    assert first_word("") == ""
    assert first_word("(SELECT 1)") == ""  # not a keyword: SQLite judges it
    assert first_word("'DROP' TABLE t") == ""
    assert first_word("x'00'") == ""  # a blob, as the scan says
    assert first_word("xyz'00'") == "XYZ"


@given(st.text(alphabet=st.sampled_from(list("ab xX'\"`[]-/*;\n$0(),")), max_size=30))
def test_first_word_agrees_with_the_scan(text: str) -> None:
    significant = tokens(text)
    expected = significant[0].text.upper() if significant and significant[0].kind == "word" else ""
    assert first_word(text) == expected


def test_dequote_and_one_line() -> None:
    assert dequote('"a""b"') == 'a"b'
    assert dequote("`a``b`") == "a`b"
    assert dequote("[a]]") == "a]"
    assert dequote("plain") == "plain"
    assert one_line("CREATE TABLE t (\n  a INTEGER, -- the a\n  b TEXT\n)") == (
        "CREATE TABLE t ( a INTEGER, b TEXT )"
    )
    assert one_line("SELECT " + "x" * 300, limit=20) == "SELECT xxxxxxxxxx..."


def test_statements_keep_semicolons_in_strings_identifiers_comments_and_triggers() -> None:
    text = """
        -- leading comment
        INSERT INTO kv VALUES (1, 'a;b');  -- first
        ;; /* nothing */ ;
        CREATE TABLE "odd;name" (k INTEGER /* ; */ PRIMARY KEY);
        CREATE TRIGGER t AFTER INSERT ON kv BEGIN
          SELECT 1; SELECT ';';
        END;
        UPDATE kv SET v = 'x'
    """
    assert statements(text) == [
        Statement("INSERT INTO kv VALUES (1, 'a;b')", 3, True),
        Statement('CREATE TABLE "odd;name" (k INTEGER /* ; */ PRIMARY KEY)', 5, True),
        Statement(
            "CREATE TRIGGER t AFTER INSERT ON kv BEGIN\n          SELECT 1; SELECT ';';\n"
            "        END",
            6,
            True,
        ),
        Statement("UPDATE kv SET v = 'x'", 9, False),
    ]
    assert [s.with_semicolon() for s in statements("SELECT 1; SELECT 2")] == [
        "SELECT 1;",
        "SELECT 2",
    ]


def test_statements_of_nothing() -> None:
    assert statements("") == []
    assert statements("-- only a comment\n") == []
    assert statements(" ; ;\n/* x */;") == []


def test_an_unfinished_trigger_or_string_is_one_unterminated_statement() -> None:
    (stmt,) = statements("CREATE TRIGGER t AFTER INSERT ON kv BEGIN SELECT 1;")
    assert not stmt.terminated
    (stmt,) = statements("SELECT 'a; b; c")
    assert not stmt.terminated and stmt.text == "SELECT 'a; b; c"


_simple = st.sampled_from(
    [
        "SELECT 1",
        "SELECT ';'",
        'SELECT 1 AS "a;b"',
        "SELECT /* ; */ 2",
        "SELECT 3 -- ;\n",
        "CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; SELECT 2; END",
        "INSERT INTO t VALUES (x'3b', '--', '/*')",
    ]
)


@given(st.lists(_simple, max_size=6))
def test_statements_split_what_was_joined(parts: list[str]) -> None:
    """Any script of complete statements splits back into them, each one complete for SQLite."""
    text = "".join(p + ";\n" for p in parts)
    got = statements(text)
    assert [s.text for s in got] == [p.rstrip("\n").removesuffix("-- ;").rstrip() for p in parts]
    assert all(sqlite3.complete_statement(s.with_semicolon() + "\n") for s in got)
