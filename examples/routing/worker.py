"""A worker: the host that runs some machines and the source of truth for them (as on Fly.io,
where no central orchestrator holds this state). It publishes its machines into its own node
over the HTTP API and updates their state there; the cluster spreads the rows to every node.

A worker writes only the rows of its own machines (``WHERE worker = ?``), so two workers never
fight over a row.

    python examples/routing/worker.py --api 127.0.0.1:8080 --name ams1 --region ams start web
    python examples/routing/worker.py --api 127.0.0.1:8080 --name ams1 state ams1-m1 stopped
    python examples/routing/worker.py --api 127.0.0.1:8080 --name ams1 destroy ams1-m1
    python examples/routing/worker.py --api 127.0.0.1:8080 --name ams1 list
"""

from __future__ import annotations

import argparse
import sys

from corrosion_py.client import ClientError, CorrosionClient

INSERT_APP = "INSERT INTO apps (name) VALUES (?) ON CONFLICT (name) DO NOTHING"
INSERT_MACHINE = (
    "INSERT INTO machines (id, app, worker, region, address, state) VALUES (?, ?, ?, ?, ?, ?)"
)


class Worker:
    """A worker named ``name`` in ``region``, writing to the node whose HTTP API is ``api``.
    Its machines get ids ``<name>-m<n>`` and addresses ``[fdaa:0:<subnet>::<n>]:8080``."""

    def __init__(self, api: str, name: str, region: str = "", subnet: int = 1) -> None:
        self.client = CorrosionClient(api)
        self.name, self.region, self.subnet = name, region, subnet

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def machines(self) -> list[tuple[str, str, str, str]]:
        """This worker's machines as the node has them: (id, app, address, state)."""
        sql = "SELECT id, app, address, state FROM machines WHERE worker = ? ORDER BY id"
        with self.client.query(sql, [self.name]) as rows:
            return [tuple(row) for row in rows]

    def start(self, app: str) -> str:
        """Create a machine of ``app`` here, in state 'started': its id."""
        numbers = [int(mid.rsplit("-m", 1)[1]) for mid, *_ in self.machines()]
        n = max(numbers, default=0) + 1
        machine_id, address = f"{self.name}-m{n}", f"[fdaa:0:{self.subnet}::{n}]:8080"
        self.client.transaction([
            (INSERT_APP, [app]),  # the app's row, if no one wrote it yet
            (INSERT_MACHINE, [machine_id, app, self.name, self.region, address, "started"]),
        ])  # fmt: skip
        return machine_id

    def set_state(self, machine_id: str, state: str) -> None:
        """Change one of this worker's machines' state ('started', 'stopped', ...)."""
        self._own("UPDATE machines SET state = ? WHERE id = ? AND worker = ?",
                  [state, machine_id, self.name])  # fmt: skip

    def destroy(self, machine_id: str) -> None:
        """Delete one of this worker's machines."""
        self._own("DELETE FROM machines WHERE id = ? AND worker = ?", [machine_id, self.name])

    def _own(self, sql: str, params: list[str]) -> None:
        result = self.client.transaction([(sql, params)])
        if result.results[0].rows_affected != 1:
            raise LookupError(f"worker {self.name} has no machine {params[-2]!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", required=True, help="the node's HTTP API, HOST:PORT")
    parser.add_argument("--name", required=True, help="this worker's name, e.g. ams1")
    parser.add_argument("--region", default="", help="where this worker runs, e.g. ams")
    parser.add_argument("--subnet", type=int, default=1, help="its machines' address block")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("start", help="start a machine of APP").add_argument("app")
    state = commands.add_parser("state", help="set a machine's state")
    state.add_argument("machine")
    state.add_argument("state")
    commands.add_parser("destroy", help="delete a machine").add_argument("machine")
    commands.add_parser("list", help="this worker's machines")
    args = parser.parse_args()
    try:
        with Worker(args.api, args.name, args.region, args.subnet) as worker:
            if args.command == "start":
                print(worker.start(args.app))
            elif args.command == "state":
                worker.set_state(args.machine, args.state)
            elif args.command == "destroy":
                worker.destroy(args.machine)
            else:
                for row in worker.machines():
                    print("  ".join(row))
    except (ClientError, LookupError) as e:
        sys.exit(f"worker: {e}")


if __name__ == "__main__":
    main()
