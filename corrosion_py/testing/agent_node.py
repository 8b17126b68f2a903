"""An agent as its own OS process, driven by JSON lines, for multi-process tests and benchmarks
(the user-facing command is ``corrosion agent``, with a config file and the HTTP API):

    python -m corrosion_py.testing.agent_node --db n1.db --schema schema.sql [--gossip HOST:PORT]
        [--bootstrap HOST:PORT ...] [--cluster-id N] [--preset local|lan|wan] [--loss P]
        [--sync-interval LOW HIGH] [--seed N] [--api HOST:PORT] [--keyring-file PATH]

It prints ``{"event": "ready", "gossip": "HOST:PORT", "actor": HEX, "api": "HOST:PORT"|null}``
once running (``api`` when ``--api`` asked for the HTTP API), then reads
one command per line on stdin and answers on stdout with the same ``id``:

    {"id": 1, "tx": ["INSERT ...", ["INSERT ... VALUES (?)", [1]]]} -> {"id": 1, "version": 7}
    {"id": 2, "txs": [[stmt, ...], ...]} -> {"id": 2, "versions": [...]} (a burst, concurrent)
    {"id": 2, "state": true} -> {"id": 2, "heads": {...}, "gaps": 0, "partials": 0, "alive": 4}
    {"id": 3, "stats": true} -> {"id": 3, "stats": {...}}
    {"id": 3, "members": true} -> {"id": 3, "members": [[actor_hex, "HOST:PORT", state, inc]]}
    {"id": 4, "arrivals": true} -> [[actor_hex, version, wall time], ...] since the last call
    {"id": 5, "block": ["HOST:PORT", ...]} -> cut traffic to those nodes ([] heals; tests)

A bad command gets ``{"id": .., "error": "..."}`` and changes nothing. End of stdin, SIGINT or
SIGTERM stop the agent cleanly (leave, drain, close).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import trio

from corrosion_py.addr import format_addr, parse_addr
from corrosion_py.agent.agent import Agent, AgentConfig
from corrosion_py.errors import CorrosionError
from corrosion_py.net.faults import FaultPlan
from corrosion_py.runner import NodeConfig, open_node
from corrosion_py.swim.presets import PRESETS
from corrosion_py.testing.child import emit


def _statement(raw: Any) -> str | tuple[str, Any]:
    if isinstance(raw, str):
        return raw
    if isinstance(raw, list) and len(raw) == 2 and isinstance(raw[0], str):
        return raw[0], raw[1]
    raise ValueError(f"a statement is a string or [sql, params], got {raw!r}")


async def _answer(agent: Agent, command: dict[str, Any]) -> dict[str, Any]:
    if "tx" in command:
        result = await agent.transaction([_statement(s) for s in command["tx"]])
        return {"version": result.version, "rows": result.rows_affected}
    if "txs" in command:  # many transactions at once (bursts), 16 in flight: group commit
        txs = [[_statement(s) for s in tx] for tx in command["txs"]]
        versions: list[int | None] = [None] * len(txs)
        errors: list[str] = []
        limiter = trio.CapacityLimiter(16)

        async def one(i: int) -> None:
            async with limiter:
                try:
                    versions[i] = (await agent.transaction(txs[i])).version
                except CorrosionError as e:
                    errors.append(f"transaction {i}: {e}")

        async with trio.open_nursery() as nursery:
            for i in range(len(txs)):
                nursery.start_soon(one, i)
        return {"versions": versions, "errors": errors}
    if "state" in command:
        state = agent.store.sync_state()
        return {
            "heads": {a.hex(): v for a, v in state.heads.items()},
            "gaps": sum(e - s + 1 for ranges in state.need.values() for s, e in ranges),
            "partials": sum(len(p) for p in state.partial_need.values()),
            "alive": len(agent.alive_members()),
            "queue": agent.apply_queue.depth,
        }
    if "stats" in command:
        return {"stats": agent.stats()}
    if "members" in command:
        return {
            "members": [
                [m.actor_id.hex(), format_addr(m.addr), m.state.name.lower(), m.incarnation]
                for m in agent.members()
            ]
        }
    if "arrivals" in command:  # taken, so the next call returns only newer ones
        taken = list(agent.arrivals)
        agent.arrivals.clear()
        return {"arrivals": [[a.hex(), v, t] for a, v, t in taken]}
    if "block" in command:
        agent.block([parse_addr(a) for a in command["block"]])
        return {"blocked": len(command["block"])}
    raise ValueError(f"unknown command {sorted(command)}")


async def _commands(agent: Agent, done: trio.CancelScope) -> None:
    """Answer each command line of stdin; its end stops the agent. Read without a thread
    (a non-blocking copy of the descriptor), so SIGTERM's cancellation is not held up by a
    read waiting for a line."""
    async with trio.lowlevel.FdStream(os.dup(sys.stdin.fileno())) as stdin:
        pending = b""
        while data := await stdin.receive_some(1 << 16):
            *lines, pending = (pending + data).split(b"\n")
            for line in lines:
                await _command(agent, line)
    done.cancel()


async def _command(agent: Agent, line: bytes) -> None:
    command: Any = None
    try:
        command = json.loads(line)
        if not isinstance(command, dict):
            raise ValueError("a command is a JSON object")
        reply = await _answer(agent, command)
    except (ValueError, TypeError, CorrosionError) as e:
        reply = {"error": str(e)}
    emit(id=command.get("id") if isinstance(command, dict) else None, **reply)


async def main(args: argparse.Namespace) -> None:
    config = AgentConfig(
        db_path=args.db,
        schema_paths=args.schema,
        gossip_addr=args.gossip,
        bootstrap=args.bootstrap,
        cluster_id=args.cluster_id,
        swim=PRESETS[args.preset],
        sync_interval=tuple(args.sync_interval),
        faults=FaultPlan(loss=args.loss),
        seed=args.seed,
        keyring_file=args.keyring_file,
    )
    with trio.CancelScope() as scope:
        async with (
            open_node(NodeConfig(config, api_addr=args.api)) as node,
            trio.open_nursery() as nursery,
        ):
            agent = node.agent
            host, port = agent.gossip_addr
            api = format_addr(node.api_addr) if node.api_addr is not None else None
            emit(event="ready", gossip=f"{host}:{port}", actor=agent.actor_id.hex(), api=api)
            nursery.start_soon(_commands, agent, scope)
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    scope.cancel()
    emit(event="stopped")


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--schema", type=Path, nargs="*", default=[])
    parser.add_argument("--gossip", type=parse_addr, default=("127.0.0.1", 0))
    parser.add_argument("--bootstrap", type=parse_addr, nargs="*", default=[])
    parser.add_argument("--cluster-id", type=int, default=0)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="local")
    parser.add_argument("--loss", type=float, default=0.0, help="share of datagrams dropped")
    parser.add_argument("--sync-interval", type=float, nargs=2, default=[1.0, 15.0])
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--api", type=parse_addr, default=None, help="HTTP API address")
    parser.add_argument("--keyring-file", type=Path, default=None, help="gossip keys")
    trio.run(main, parser.parse_args())


if __name__ == "__main__":
    try:
        run()
    except KeyboardInterrupt:
        sys.exit(130)
