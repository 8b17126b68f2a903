"""The vocabulary of the HTTP API that the server and the clients share (Corrosion's
``corro-api-types``): events and their NDJSON lines (`events`), errors as codes with structured
fields (`problems`), the answers of transactions and table stats (`results`), and values and
statements (`values`).

It imports nothing but the standard library, attrs and `corrosion_py.aliases`, so a client
loads it without trio, the store or the HTTP server.
"""

from corrosion_py.api_types.events import (
    QUERY_HASH_HEADER,
    QUERY_ID_HEADER,
    Change,
    Columns,
    EndOfQuery,
    Event,
    Line,
    MalformedLine,
    Notify,
    Row,
    event_from_json,
    event_json,
    parse_line,
)
from corrosion_py.api_types.problems import (
    ERROR_CODES_HEADER,
    ErrorCode,
    Problem,
    problem_from_json,
    problem_json,
)
from corrosion_py.api_types.results import (
    ExecResult,
    StatementResult,
    TableStats,
    exec_error_json,
    exec_from_json,
    exec_json,
    table_stats_from_json,
    table_stats_json,
)
from corrosion_py.api_types.values import (
    ApiStatement,
    blob,
    cell_json,
    decode_cells,
    param_json,
    params_json,
    row_json,
    statement_json,
    statements_json,
)

__all__ = [
    "ERROR_CODES_HEADER",
    "QUERY_HASH_HEADER",
    "QUERY_ID_HEADER",
    "ApiStatement",
    "Change",
    "Columns",
    "EndOfQuery",
    "ErrorCode",
    "Event",
    "ExecResult",
    "Line",
    "MalformedLine",
    "Notify",
    "Problem",
    "Row",
    "StatementResult",
    "TableStats",
    "blob",
    "cell_json",
    "decode_cells",
    "event_from_json",
    "event_json",
    "exec_error_json",
    "exec_from_json",
    "exec_json",
    "param_json",
    "params_json",
    "parse_line",
    "problem_from_json",
    "problem_json",
    "row_json",
    "statement_json",
    "statements_json",
    "table_stats_from_json",
    "table_stats_json",
]
