"""``python -m corrosion_py.sim SCENARIO`` (also ``corrosion sim SCENARIO``, the same command object
added to the ``corrosion`` group by cli/__init__.py): run a named scenario and print its report."""

from __future__ import annotations

import click

from corrosion_py.sim.scenarios import SCENARIOS, Params
from corrosion_py.swim import LAN, LOCAL, WAN

PRESETS = {"lan": LAN, "wan": WAN, "local": LOCAL}


@click.command()
@click.argument("scenario", type=click.Choice(sorted(SCENARIOS)))
@click.option("--nodes", default=50, show_default=True, help="Cluster size.")
@click.option("--loss", default=0.0, show_default=True, help="Per-datagram loss, 0..1.")
@click.option("--seconds", default=60.0, show_default=True, help="Measured simulated time.")
@click.option("--seed", default=1, show_default=True, help="Same seed, same run.")
@click.option("--warmup", default=10.0, show_default=True, help="Unmeasured start, seconds.")
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default="lan", show_default=True)
def main(
    scenario: str, nodes: int, loss: float, seconds: float, seed: int, warmup: float, preset: str
) -> None:
    """Simulate SCENARIO (crash, steady, partition, slow-node, dissemination) on virtual time."""
    if nodes < 2 or not 0.0 <= loss <= 1.0 or seconds <= 0 or warmup < 0:
        raise click.UsageError("need --nodes >= 2, 0 <= --loss <= 1, --seconds > 0, --warmup >= 0")
    params = Params(nodes, loss, seconds, seed, PRESETS[preset], warmup)
    click.echo(SCENARIOS[scenario](params).text())


if __name__ == "__main__":
    main()
