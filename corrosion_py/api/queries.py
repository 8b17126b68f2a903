"""``POST /v1/queries[?timeout=secs]``: one read-only statement, streamed as NDJSON.

    {"columns":["pk","sandwich"]}
    {"row":[1,[1,"burger"]]}
    {"row":[2,[2,"ham"]]}
    {"eoq":{"time":0.0012}}

``row`` is ``[n, cells]`` with n a 1-based counter of this response; a failure after the
columns is an ``{"error": message}`` line that ends the stream. ``eoq.time`` is the seconds
from the statement's start to its last row (Corrosion reports only the start, ~0).

Rules:

- **Read-only, refused before streaming.** The statement runs on a read-only connection of its
  own (``Agent.read_cursor``: the node's rules for user SQL, then reads only); a refusal is
  answered 400: ``{"error":"statement is not readonly"}`` for a write, DDL, ATTACH or a PRAGMA
  that sets something, a message naming the table or function the node's rules refuse, or the
  prepare or bind error (several statements, an empty one, text that is not UTF-8). A value
  that is not UTF-8 text (``CAST(x'ff' AS TEXT)``) ends the stream with an ``error`` line
  naming the column.
- **Streamed, bounded.** The statement is stepped on a worker thread in batches of about
  ``query_batch_bytes`` of encoded lines; the next batch is read only once the previous one was
  handed to the server, so a slow client slows the reader and memory holds one batch. (One
  thread call per batch rather than a reader thread feeding a channel: the same bound, and
  nothing left blocked in ``from_thread`` when the client goes away.)
- **Ends cleanly.** Client gone, server shutting down, or the timeout (default
  ``query_timeout`` = 60 s for the whole stream, ``?timeout=0`` none): the running step is
  interrupted and the connection closed. Its read snapshot is the one SQLite lock a request
  holds across network sends; the timeout bounds it.
- **Bounded concurrency.** At most ``query_pool`` (20) queries run at once; another waits up to
  ``query_wait`` seconds for a slot, then gets 503.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import trio

from corrosion_py.api.errors import BadRequest, Unavailable
from corrosion_py.api.inputs import read_json, timeout_param
from corrosion_py.api.limits import ApiConfig
from corrosion_py.api.responses import NdjsonResponse, Response, ndjson_line
from corrosion_py.api.routing import Request, Route
from corrosion_py.api.statements import parse_statement, row_line
from corrosion_py.errors import QueryError

if TYPE_CHECKING:
    from corrosion_py.agent import Agent, ReadCursor

FETCH = 64  # rows per fetch
MAX_BATCH_ROWS = 1024


class _Chunks:
    """A cursor's rows as encoded NDJSON lines, a batch at a time. `next_chunk` blocks: call it
    on a worker thread."""

    def __init__(self, cursor: ReadCursor, batch_bytes: int) -> None:
        self.cursor = cursor
        self.batch_bytes = batch_bytes
        self.rows = 0
        self.done = False

    def next_chunk(self) -> tuple[bytes, bool]:
        """The next encoded lines (rows, then ``eoq``, or an ``error`` line) and whether the
        stream is complete."""
        parts: list[bytes] = []
        size = count = 0
        try:
            while not self.done and size < self.batch_bytes and count < MAX_BATCH_ROWS:
                batch = self.cursor.fetch(FETCH)
                if batch is None:  # stopped: the response is being closed
                    self.done = True
                    break
                for row in batch:
                    self.rows += 1
                    line = row_line(self.rows, row)
                    parts.append(line)
                    size += len(line)
                count += len(batch)
                if len(batch) < FETCH:
                    parts.append(ndjson_line({"eoq": {"time": self.cursor.elapsed}}))
                    self.done = True
        except QueryError as exc:
            parts.append(ndjson_line({"error": str(exc)}))
            self.done = True
        return b"".join(parts), self.done


def routes(agent: Agent, config: ApiConfig) -> list[Route]:
    pool = trio.Semaphore(config.query_pool)
    threads = trio.CapacityLimiter(config.query_pool)

    async def queries(request: Request) -> Response:
        timeout = timeout_param(request, config.query_timeout)
        sql, params = parse_statement(await read_json(request, config.max_body_bytes))
        acquired = False
        with trio.move_on_after(config.query_wait):
            await pool.acquire()
            acquired = True
        if not acquired:
            raise Unavailable(f"too many queries running ({config.query_pool}): retry")
        cursor = agent.read_cursor(sql, params, timeout=timeout)

        async def close() -> None:
            try:
                cursor.stop()
                await trio.to_thread.run_sync(cursor.close)
            finally:
                pool.release()

        try:
            columns = await trio.to_thread.run_sync(cursor.open, limiter=threads)
        except BaseException as exc:
            with trio.CancelScope(shield=True):
                await close()
            if isinstance(exc, QueryError):
                raise BadRequest(str(exc)) from None
            raise
        chunks = _Chunks(cursor, config.query_batch_bytes)
        return NdjsonResponse(
            _lines(chunks, columns, threads),
            deadline=None if timeout is None else trio.current_time() + timeout,
            timeout_message=cursor.timeout_message,
            on_close=close,
        )

    return [Route("/v1/queries", queries, methods=["POST"])]


async def _lines(
    chunks: _Chunks, columns: list[str], threads: trio.CapacityLimiter
) -> AsyncIterator[bytes]:
    yield ndjson_line({"columns": columns})
    done = False
    while not done:
        # abandoned on cancel: the response's close then stops the step and waits for it
        chunk, done = await trio.to_thread.run_sync(
            chunks.next_chunk, limiter=threads, abandon_on_cancel=True
        )
        yield chunk
