"""The Ray backend beyond what tests/test_worker.py runs on both backends: runs spread over the nodes of
a cluster (ray.cluster_utils.Cluster: two simulated nodes on 127.0.0.1), a node that dies, and clear
errors for a cluster that cannot be reached and for Ray not installed."""

import os
import re
import subprocess
import sys
import time

import pytest

from nst_core.serve.errors import StartFailed
from nst_core.serve.job import DONE, FAILED, STOPPED
from nst_core.serve.limits import Limits
from nst_core.serve.queue import Runner
from tests.conftest import ROOT, wait
from tests.servers import free_port
from tests.tasks import Ticking

pytestmark = pytest.mark.ray


def test_an_unreachable_cluster_is_one_line_naming_ray_address():
    from nst_core.serve.backends.ray import RayBackend

    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    t = time.monotonic()
    with pytest.raises(StartFailed, match=rf"^cannot reach the Ray cluster at RAY_ADDRESS={address} \(") as e:
        RayBackend("original", "cpu", Limits(), address=address)
    assert time.monotonic() - t < 10 and "\n" not in str(e.value)


def test_without_ray_installed_the_error_says_how_to_install_it():
    code = "import sys; sys.modules['ray'] = None\nfrom nst_core.serve.backends.ray import RayBackend\nRayBackend()"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1] == (
        "nst_core.serve.errors.StartFailed: NST_RUNNER=ray needs Ray: pip install -r requirements-ray.txt"
    )


def test_a_local_instance_keeps_its_token_private():
    """Ray 2.60 writes the token it generates for a local instance readable by every user (0644); anyone on the
    machine could use it to join the instance and run code in it."""
    from nst_core.serve.backends.ray import TOKEN, RayBackend

    if TOKEN.exists():
        TOKEN.chmod(0o644)  # as Ray leaves it
    backend = RayBackend("original", "cpu", Limits(), num_cpus=2)
    try:
        assert TOKEN.exists() and TOKEN.stat().st_mode & 0o077 == 0, oct(TOKEN.stat().st_mode)
    finally:
        backend.close()


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    c.add_node(num_cpus=1)
    c.wait_for_nodes()
    yield c
    c.shutdown()


def test_runs_spread_over_the_nodes_of_a_cluster(cluster):
    from nst_core.serve.backends.ray import RayBackend

    # Joined like a remote cluster: RAY_ADDRESS, and this package shipped to the nodes by Ray.
    backend = RayBackend("original", "cpu", Limits(ray_cpus=1), address=cluster.address)
    try:
        assert backend.slots == 2 and backend.nodes == 2
        assert backend.info["device"].startswith(f"2 CPU workers on 2 nodes on the Ray cluster at {cluster.address}")
        runner = Runner(backend, Limits(heartbeat_timeout=5.0), poll=0.1)
        jobs = [runner.submit(Ticking(40, 0.02), owner=f"tab-{i}") for i in range(2)]
        wait(lambda: not any(j.active for j in jobs), beat=jobs)
        assert [j.state for j in jobs] == [DONE, DONE] and all(len(j.history) == 40 for j in jobs)
        assert sorted(backend.runs_per_node.values()) == [1, 1]  # one run on each node
    finally:
        backend.close()


def test_the_page_says_in_one_line_that_the_cluster_cannot_be_reached():
    # Its own process: the service is started once per server, and this server's must fail.
    code = (
        "from streamlit.testing.v1 import AppTest\n"
        "at = AppTest.from_file('app.py', default_timeout=60)\n"
        "at.run()\n"
        "assert not at.exception, at.exception\n"
        "print('\\n'.join(e.value for e in at.error))\n"
    )
    address = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "NST_RUNNER": "ray", "RAY_ADDRESS": address}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(
        f"The server could not start its runner: cannot reach the Ray cluster at RAY_ADDRESS={address} ("
    )
    assert len(out.stdout.strip().splitlines()) == 1


def test_a_node_that_dies_fails_its_run_in_one_line_and_the_other_node_carries_on(cluster):
    from nst_core.serve.backends.ray import RayBackend

    backend = RayBackend("original", "cpu", Limits(ray_cpus=1), address=cluster.address)
    try:
        runner = Runner(backend, Limits(heartbeat_timeout=5.0), poll=0.1)
        jobs = [runner.submit(Ticking(100_000, 0.02), owner=f"tab-{i}") for i in range(2)]
        wait(lambda: all(len(j.history) >= 3 for j in jobs), beat=jobs)
        cluster.remove_node(next(iter(cluster.worker_nodes)))  # the node without the head's services
        wait(lambda: any(not j.active for j in jobs), beat=jobs)
        [lost] = [j for j in jobs if not j.active]
        [alive] = [j for j in jobs if j.active]
        assert lost.state == FAILED and lost.history  # what it had sent is kept
        assert re.match(r"^the Ray worker \(pid \d+ on 127\.0\.0\.1\) died during this run; a new one", lost.reason)
        alive.cancel("stopped by you")
        wait(lambda: not alive.active, beat=[alive])
        assert alive.state == STOPPED and alive.finished_ok
        after = runner.submit(Ticking(3, 0.01))  # on the surviving actor, not the replacement with no node
        wait(lambda: not after.active, beat=[after])
        assert after.state == DONE
    finally:
        backend.close()
