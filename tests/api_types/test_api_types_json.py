"""The API's vocabulary through its JSON: every event, error and answer comes back equal from
its encoding (property tests), the shapes are Corrosion's byte for byte, and any JSON a hostile
server could send decodes to an event, None, or `MalformedLine`, never anything else."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corrosion_py.api_types import (
    Change,
    Columns,
    EndOfQuery,
    ErrorCode,
    ExecResult,
    MalformedLine,
    Notify,
    Problem,
    Row,
    StatementResult,
    TableStats,
    cell_json,
    event_from_json,
    event_json,
    exec_error_json,
    exec_from_json,
    exec_json,
    parse_line,
    problem_from_json,
    problem_json,
    statement_json,
    table_stats_from_json,
    table_stats_json,
)

ids = st.integers(min_value=0, max_value=2**63 - 1)
cells = st.lists(
    st.none()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
    | st.binary(max_size=16),
    max_size=6,
).map(tuple)
kinds = st.sampled_from(["insert", "update", "delete"])
events = st.one_of(
    st.builds(Columns, st.lists(st.text(), max_size=6).map(tuple)),
    st.builds(Row, ids, cells),
    st.builds(EndOfQuery, st.floats(min_value=0, allow_infinity=False), st.none() | ids),
    st.builds(Change, kinds, ids, cells, ids),
    st.builds(Notify, st.sampled_from(["update", "delete"]), cells),
)
codes = st.sampled_from(list(ErrorCode)) | st.none() | st.text(min_size=1)
problems = st.builds(Problem, codes, st.text(), st.none() | ids, st.none() | ids)


def wire(obj: Any) -> str:
    """As the server writes a line (compact, UTF-8, no NaN)."""
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


@given(events)
def test_every_event_comes_back_equal_from_its_line(event: Any) -> None:
    assert parse_line(wire(event_json(event))) == event
    assert parse_line(wire(event_json(event)).encode()) == event


@given(problems)
def test_every_problem_comes_back_equal_from_its_json(problem: Problem) -> None:
    assert problem_from_json(json.loads(wire(problem_json(problem)))) == (
        problem if problem.code is not None else Problem(None, problem.message)
    )
    assert parse_line(wire(problem_json(problem))) == problem_from_json(problem_json(problem))
    # without codes: Corrosion's line, the message only
    assert problem_json(problem, with_code=False) == {"error": problem.message}


def test_known_codes_come_back_as_members_and_unknown_ones_as_text() -> None:
    for code in ErrorCode:
        back = problem_from_json({"error": "m", "code": str(code)})
        assert back is not None and back.code is code
    back = problem_from_json({"error": "m", "code": "from_the_future", "min_change_id": "7"})
    assert back == Problem("from_the_future", "m")  # a field of the wrong type is dropped
    assert problem_from_json({"error": "m", "code": 5, "resume_from": -1}) == Problem(None, "m")
    assert problem_from_json({"error": 5}) is None and problem_from_json(["error"]) is None


@given(
    st.lists(st.builds(StatementResult, ids, st.floats(min_value=0, allow_infinity=False))),
    st.floats(min_value=0, allow_infinity=False),
    st.none() | ids,
    st.text(),
    st.none() | st.dictionaries(st.text(), st.lists(st.text())),
)
def test_exec_results_come_back_equal(
    results: list[StatementResult],
    time: float,
    version: int | None,
    actor: str,
    schema: dict[str, Any] | None,
) -> None:
    result = ExecResult(tuple(results), time, version, actor, schema)
    assert exec_from_json(json.loads(wire(exec_json(result)))) == result


def test_shapes_are_corrosions() -> None:
    assert wire(event_json(Columns(("id", "v")))) == '{"columns":["id","v"]}'
    assert wire(event_json(Row(1, ("m1", b"\x00\xff", None)))) == '{"row":[1,["m1",[0,255],null]]}'
    assert wire(event_json(EndOfQuery(0.5, 0))) == '{"eoq":{"time":0.5,"change_id":0}}'
    assert wire(event_json(EndOfQuery(0.5))) == '{"eoq":{"time":0.5}}'
    assert wire(event_json(Change("delete", 3, ("m1",), 4))) == '{"change":["delete",3,["m1"],4]}'
    assert wire(event_json(Notify("update", (7, "eu")))) == '{"notify":["update",[7,"eu"]]}'
    lagged = Problem(ErrorCode.SUBSCRIBER_LAGGED, "behind", resume_from=3)
    assert wire(problem_json(lagged)) == (
        '{"error":"behind","code":"subscriber_lagged","resume_from":3}'
    )
    refused = exec_error_json(Problem(ErrorCode.BAD_REQUEST, "no"), actor_id="ab", time=0.5)
    assert refused == {"results": [{"error": "no"}], "time": 0.5, "version": None,
                       "actor_id": "ab", "error": "no", "code": "bad_request"}  # fmt: skip
    stats = TableStats(4, ["nope"])
    assert wire(table_stats_json(stats)) == '{"total_row_count":4,"invalid_tables":["nope"]}'
    assert table_stats_from_json(table_stats_json(stats)) == stats
    assert statement_json(("SELECT :a", {"a": b"\x01"})) == ["SELECT :a", {":a": [1]}]
    assert cell_json(math.inf) is None and cell_json(-math.inf) is None


def test_blobs_stay_lists_when_asked() -> None:
    line = wire(event_json(Row(1, (b"\x01\x02", "x"))))
    assert parse_line(line, decode_blobs=False) == Row(1, ([1, 2], "x"))
    assert parse_line(line) == Row(1, (b"\x01\x02", "x"))


def test_unknown_kinds_of_lines_are_none_and_bad_json_is_malformed() -> None:
    assert parse_line('{"future_line":[1,2]}') is None
    for line in ["{", "[" * 100_000, b"\xff"]:
        with pytest.raises(MalformedLine, match="malformed line in the stream"):
            parse_line(line)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
line_keys = st.sampled_from(["row", "change", "columns", "eoq", "notify", "error", "code", "x"])


@given(json_values | st.dictionaries(line_keys, json_values, max_size=3))
def test_any_json_is_an_event_none_or_malformed(obj: object) -> None:
    """What a hostile server can send: never an exception other than `MalformedLine`."""
    try:
        result = event_from_json(obj)
    except MalformedLine as exc:
        assert "line" in str(exc)
        return
    assert result is None or isinstance(
        result, Columns | Row | EndOfQuery | Change | Notify | Problem
    )


@pytest.mark.parametrize(
    "body", [None, [], {"results": 5, "time": 0}, {"results": [{"rows_affected": "x"}], "time": 0},
             {"results": [], "time": "soon"}, {"results": [], "time": 0, "version": "v"}],
)  # fmt: skip
def test_malformed_exec_answers_are_value_errors(body: object) -> None:
    with pytest.raises(ValueError, match="not a transaction's answer"):
        exec_from_json(body)
