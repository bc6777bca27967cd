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
