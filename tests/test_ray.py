"""The Ray executor on a local multi-node cluster (`ray.cluster_utils.Cluster`, two nodes of one CPU each).

DSO agents live on Ray actors spread over the nodes; each loads its own data once (its folder in an operator
layout) and keeps its models across the curve, cut and dispatch rounds; an actor killed in the middle of a run
is restarted by Ray, its agents are rebuilt from their data and the run completes with the same result.

Needs Ray (the `test` extra); without it the module is skipped, except in CI (`CI` set), where it is a failure.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

if importlib.util.find_spec("ray") is None:
    if os.environ.get("CI"):
        raise ImportError("tests/test_ray.py needs Ray in CI (the 'test' extra)")
    pytest.skip("Ray is not installed (pip install 'tdmarket[ray]')", allow_module_level=True)

import tdmarket
from tdmarket import api
from tdmarket.examples import builtin_path
from tdmarket.io import read
from tdmarket.io.layout import write_layout
from tdmarket.operators.executors import RayExecutor


@pytest.fixture(scope="module")
def cluster():
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    # the workers import tdmarket from this checkout, whether or not it is installed
    root = str(Path(__file__).resolve().parents[1])
    before = os.environ.get("PYTHONPATH")
    env = {"PYTHONPATH": os.pathsep.join(p for p in (root, before or "") if p)}
    os.environ["PYTHONPATH"] = env["PYTHONPATH"]  # the nodes' processes inherit it
    try:
        c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
        c.add_node(num_cpus=1)
        c.wait_for_nodes()
        ray.init(address=c.address, logging_level="ERROR", runtime_env={"env_vars": env})
        yield c
        ray.shutdown()
        c.shutdown()
    finally:
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before


@pytest.fixture(scope="module")
def layout(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ray") / "example"
    write_layout(read(builtin_path()), out)
    return out


@pytest.fixture(scope="module")
def reference():
    return tdmarket.clear(builtin_path(), scheme="hierarchical", executor="inline", incentives=False)


def test_actors_are_spread_over_the_nodes(cluster):
    import ray

    exe = RayExecutor(workers=2)
    try:
        nodes = exe.placement()
    finally:
        exe.close()
    assert len(ray.nodes()) == 2
    assert len(set(nodes)) == 2  # one actor per node


def test_layout_on_ray_actors_gives_the_inline_result(cluster, layout, reference, monkeypatch):
    runtimes = []
    factory = api._runtime_factory

    def keep(**kw):
        runtimes.append(factory(**kw))
        return runtimes[-1]

    monkeypatch.setattr(api, "_runtime_factory", keep)
    got = tdmarket.clear(str(layout), scheme="hierarchical", executor="ray", workers=2, incentives=False)
    assert got.summary["options"]["executor"] == "ray"
    assert got.total_cost == reference.total_cost
    assert got.summary["communication"] == reference.summary["communication"]
    assert runtimes[0].rebuilt == []  # every agent was built once and answered every round


def test_a_killed_actor_is_restarted_and_the_run_completes(cluster, layout, reference, monkeypatch):
    """Kill every host actor (Ray may restart them) when the cut exchange starts: the agents' state is gone, the
    runtime rebuilds them from their folders on the restarted actors, and the result is the inline one."""
    import ray

    runtimes, killed = [], []
    factory = api._runtime_factory

    def keep(**kw):
        runtimes.append(factory(**kw))
        return runtimes[-1]

    def kill_at_exchange(event: dict) -> None:
        if killed or str(event.get("stage", "")).startswith("curves"):
            return
        for name in sorted(ray.util.list_named_actors()):
            if name.startswith(RayExecutor.NAME_PREFIX):
                ray.kill(ray.get_actor(name), no_restart=False)
                killed.append(name)

    monkeypatch.setattr(api, "_runtime_factory", keep)
    got = tdmarket.clear(
        str(layout),
        scheme="hierarchical",
        executor="ray",
        workers=2,
        incentives=False,
        progress=kill_at_exchange,
    )
    assert len(killed) == 2
    assert sorted(runtimes[0].rebuilt) == sorted(reference.tables["interfaces"].area.unique())
    assert got.total_cost == pytest.approx(reference.total_cost, rel=1e-6)
    assert got.summary["check"]["feasible"]
