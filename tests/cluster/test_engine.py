"""How the engine sizes its actor pool for a cluster's nodes (pure arithmetic, no Ray)."""

import pytest

from singleshot.cluster.engine import plan_workers
from singleshot.errors import UsageError


@pytest.mark.parametrize("workers, cpus, nodes, plan", [
    (None, None, [2.0], (1, 2.0)),             # one actor per node, with the node's CPUs
    (None, None, [8.0, 8.0, 4.0], (5, 4.0)),   # the smallest node's CPUs; as many as fit
    (2, None, [2.0], (2, 1.0)),                # the CPUs split among the workers
    (1, None, [4.0, 4.0], (1, 4.0)),           # never more than a node has
    (None, 1.0, [2.0, 2.0], (4, 1.0)),
    (3, 0.5, [2.0], (3, 0.5)),
])
def test_plan_workers(workers, cpus, nodes, plan):
    assert plan_workers(workers, cpus, nodes) == plan


@pytest.mark.parametrize("workers, cpus, nodes, message", [
    (3, 1.0, [2.0], "do not fit"),
    (None, 16.0, [8.0, 8.0], "more than any node has"),
])
def test_plan_workers_refuses_what_cannot_run(workers, cpus, nodes, message):
    with pytest.raises(UsageError, match=message):
        plan_workers(workers, cpus, nodes)


def test_an_address_nothing_answers_at_fails_in_one_line(tmp_path):
    """ray.init would wait minutes; the engine says so at once (a fresh process: no Ray yet)."""
    import subprocess
    import sys

    for address, message in (("127.0.0.1:1", "cannot reach a Ray cluster at 127.0.0.1:1"),
                             ("nonsense", "--address must be HOST:PORT")):
        res = subprocess.run([sys.executable, "-m", "singleshot", "detect", str(tmp_path),
                              "--engine", "ray", "--address", address],
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 2 and message in res.stderr, res.stderr
        assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
