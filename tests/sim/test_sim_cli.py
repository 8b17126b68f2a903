"""`corrosion sim`: the simulator's command under the `corrosion` group, same options and output
as `python -m corrosion_py.sim`."""

from __future__ import annotations

from click.testing import CliRunner

from corrosion_py.cli import main
from corrosion_py.sim import SCENARIOS, Params


def test_corrosion_sim_runs_a_tiny_scenario_and_matches_the_library() -> None:
    args = ["--nodes", "8", "--loss", "0.05", "--seconds", "10", "--seed", "3", "--warmup", "2"]
    result = CliRunner().invoke(main, ["sim", "crash", *args])
    assert result.exit_code == 0, result.output
    assert "detection (crash -> MemberDown" in result.output
    expected = SCENARIOS["crash"](Params(nodes=8, loss=0.05, seconds=10, seed=3, warmup=2))
    assert f"trace sha256 {expected.trace_hash}" in result.output


def test_corrosion_sim_lists_its_scenarios_and_refuses_bad_arguments() -> None:
    runner = CliRunner()
    helped = runner.invoke(main, ["sim", "--help"])
    assert helped.exit_code == 0 and "slow-node" in helped.output
    refused = runner.invoke(main, ["sim", "crash", "--nodes", "1"])
    assert refused.exit_code == 2 and "--nodes" in refused.output
