"""poseapp.interrupts: the cases of fixtures/signal_cases.py, in a pytest process of their own, since they
send signals to themselves: in the full suite's process, which earlier tests' libraries (Ray, ONNX Runtime,
OpenVINO, torch) have filled with threads and state, such a signal killed it (a segmentation fault in 3 of 3
runs, cause not found), while a fresh process takes them as a CLI run does. Runs without ../shared."""
from __future__ import annotations

import os
import subprocess
import sys

from conftest import ROOT

CASES = ROOT / "tests" / "fixtures" / "signal_cases.py"


def test_the_signal_cases_pass_in_a_fresh_process():
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(CASES)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0 and "5 passed" in run.stdout, run.stdout + run.stderr
