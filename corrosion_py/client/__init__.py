"""Python clients for corrosion_py's (and Corrosion's) HTTP API: `CorrosionClient` (httpx,
blocking: the CLI and scripts) and `AsyncCorrosionClient` (httpx under trio or asyncio).

Both have the same methods and differ only in how they wait: request shapes, parsing and
error mapping live in `protocol`, the subscription resume rules in `tracker` (no I/O in
either), the errors in `errors`, the events and result types in `corrosion_py.api_types` (the
very classes an embedded agent's subscription yields). Every refusal by the server raises a
`ClientError` subclass carrying the status, the server's message and its error code; a
connection that fails raises `TransportError` naming the URL. See docs/client.md.

    with CorrosionClient("127.0.0.1:8080") as c:
        c.transaction([("INSERT INTO kv VALUES (?, ?)", [1, b"\\x00"])])
        with c.query("SELECT k, v FROM kv") as rows:
            print(rows.columns, list(rows))
        with c.subscribe("SELECT k, v FROM kv") as sub:
            for event in sub:   # Columns, Row..., EndOfQuery, then Change... until closed
                ...
"""

from corrosion_py.api_types import (
    Change,
    Columns,
    EndOfQuery,
    ErrorCode,
    Event,
    ExecResult,
    Notify,
    Row,
    StatementResult,
    TableStats,
    blob,
    decode_cells,
)
from corrosion_py.client.asynchronous import (
    AsyncCorrosionClient,
    AsyncQueryRows,
    AsyncSubscription,
    AsyncUpdates,
)
from corrosion_py.client.blocking import CorrosionClient, QueryRows, Subscription, Updates
from corrosion_py.client.errors import (
    CannotResume,
    ChangesTooOld,
    ClientError,
    QueryError,
    ResubscribeRequired,
    ResumeFailed,
    SubscriptionError,
    SubscriptionGone,
    TransactionError,
    TransportError,
    Unauthorized,
    Unhealthy,
)
from corrosion_py.client.tracker import ResumePolicy

__all__ = [
    "AsyncCorrosionClient",
    "AsyncQueryRows",
    "AsyncSubscription",
    "AsyncUpdates",
    "CannotResume",
    "Change",
    "ChangesTooOld",
    "ClientError",
    "Columns",
    "CorrosionClient",
    "EndOfQuery",
    "ErrorCode",
    "Event",
    "ExecResult",
    "Notify",
    "QueryError",
    "QueryRows",
    "ResubscribeRequired",
    "ResumeFailed",
    "ResumePolicy",
    "Row",
    "StatementResult",
    "Subscription",
    "SubscriptionError",
    "SubscriptionGone",
    "TableStats",
    "TransactionError",
    "TransportError",
    "Unauthorized",
    "Unhealthy",
    "Updates",
    "blob",
    "decode_cells",
]
