"""``GET /v1/health``: is this node keeping up? (Corrosion's health endpoint, docs/api.md)

    {"response": {"gaps": 0, "members": 3, "p99_lag": 0.084, "queue_size": 0, "faults": [],
                  "sync": {"last_ok_ago": 2.1, "failures": 0}}}

- ``gaps``: versions this node knows exist but does not hold, from its bookkeeping: every
  missing version, plus every version received only in part, over the actors that are
  members (in any state, and this node) or that a member advertised in a sync session
  (``Agent.vouched``); claims about any other actor never count.
- ``members``: the members SWIM holds alive, plus this node.
- ``p99_lag``: 99th percentile of seconds from a remote change's timestamp to its apply here,
  over the last 120 s; null before any remote change was applied.
- ``queue_size``: changesets waiting in the apply queue.
- ``faults`` (ours): what stops the node from doing its job (``Agent.faults``: a full disk, a
  corrupt database, a sync that keeps failing); the node is unhealthy while any is listed,
  whatever the thresholds.
- ``sync`` (ours): seconds since the last sync round that worked and the rounds failed in a row;
  ``gaps`` only counts versions the node has heard of, so a node that cannot sync says it here.

Query parameters, all optional: ``gaps`` (most missing versions allowed), ``p99_lag``
(seconds), ``max_queue`` (most queued changesets), ``queue_size`` (high lag only counts while
the queue is also over this), ``failure_status`` (the status of an unhealthy answer, 503 by
default). Unhealthy when there is a fault, or gaps > ``gaps``, or queue > ``max_queue``, or
lag > ``p99_lag`` and (``queue_size`` unset or queue > ``queue_size``); the body is the same.
When ``p99_lag`` is asked for but there is no lag yet, the answer is ``failure_status`` with
``{"error": "no p99 lag information available", "code": "no_lag_info"}`` (Corrosion's message);
without that parameter ``p99_lag`` is null and the node can still be healthy (a node nobody
writes to has no lag to report).

Every number comes from ``Agent.health()``; this route only judges it against the parameters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from corrosion_py.api.inputs import float_param, int_param
from corrosion_py.api.limits import ApiConfig
from corrosion_py.api.responses import Response, error_response, json_response
from corrosion_py.api.routing import Request, Route
from corrosion_py.api_types import ErrorCode, Problem

if TYPE_CHECKING:
    from corrosion_py.agent import Agent

NO_LAG = "no p99 lag information available"


def routes(agent: Agent, config: ApiConfig) -> list[Route]:
    async def health(request: Request) -> Response:
        max_gaps = int_param(request, "gaps")
        max_lag = float_param(request, "p99_lag")
        max_queue = int_param(request, "max_queue")
        lag_queue = int_param(request, "queue_size")
        failure = int_param(request, "failure_status", 200, 599) or 503
        report = agent.health()
        gaps, lag, queue, faults = report.gaps, report.p99_lag, report.queue_size, report.faults
        if max_lag is not None and lag is None:
            return error_response(failure, Problem(ErrorCode.NO_LAG_INFO, NO_LAG))
        unhealthy = (
            bool(faults)
            or (max_gaps is not None and gaps > max_gaps)
            or (max_queue is not None and queue > max_queue)
            or (
                max_lag is not None
                and lag is not None
                and lag > max_lag
                and (lag_queue is None or queue > lag_queue)
            )
        )
        body = {"response": {"gaps": gaps, "members": report.members, "p99_lag": lag,
                             "queue_size": queue, "faults": faults,
                             "sync": report.sync}}  # fmt: skip
        return json_response(body, failure if unhealthy else 200)

    return [Route("/v1/health", health, methods=["GET"])]
