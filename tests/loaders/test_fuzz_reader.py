"""The reader under a differential fuzzer (tests/factory/fuzzing.py): the fast subset that `make test` runs.

The long run (>= 100,000 inputs) is tests/benchmarks/fuzz_reader.py; its figures are in docs/benchmarks.md.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from factory import REPO, fuzzing


@pytest.fixture(scope="module")
def fast_run() -> dict:
    # A process of its own: the harness forks once per input, which is only safe in a process
    # that has not started TensorFlow's threads (pytest's has, in other tests).
    done = subprocess.run([sys.executable, "-m", "factory.fuzzing", "--inputs", "1200", "--seed", "9"],
                          capture_output=True, text=True, timeout=600, cwd=REPO / "tests")
    return {"rc": done.returncode, **json.loads(done.stdout)}


@pytest.mark.slow
def test_fast_fuzz_run_finds_no_crash_hang_or_differential(fast_run):
    assert fast_run["inputs"] == 1200 + len(fuzzing.attacks())
    findings = [(f["kind"], f["input"], f["detail"][:120]) for f in fast_run["findings"]]
    assert (fast_run["crashes"], fast_run["hangs"], fast_run["differentials"], fast_run["bad_messages"]) == \
        (0, 0, 0, 0), findings
    assert fast_run["rc"] == 0


@pytest.mark.slow
def test_fast_fuzz_run_compares_values_and_meets_live_attacks(fast_run):
    """The run means something: many inputs are accepted (and so compared with pickle.load), and the
    fixed attacks really crash, hang or exhaust the unrestricted-call oracle while the reader refuses them."""
    assert fast_run["reader_accepted"] >= 100
    assert fast_run["oracle_crashes"] >= 1 and fast_run["oracle_hangs"] >= 1 and fast_run["oracle_exhausted"] >= 1


def test_fingerprint_tells_apart_what_assert_same_does():
    import numpy as np

    a = np.zeros(3, np.float32)
    pairs = [(np.zeros(3, np.float64), a), (np.ones(3, np.float32), a), ((a,), [a]), (-0.0, 0.0), (1, 1.0),
             ([a.copy(), a.copy()], [a, a]), ({"b": 1, "a": 2}, {"a": 2, "b": 1}),
             (np.asfortranarray(np.ones((2, 2))), np.ones((2, 2))),
             (np.arange(3, dtype=">f4"), np.arange(3.0, dtype="<f4"))]
    for x, y in pairs:
        assert fuzzing.fingerprint(x) != fuzzing.fingerprint(y), (x, y)
    assert fuzzing.fingerprint([a, {"k": (1, "x")}]) == fuzzing.fingerprint([a.copy(), {"k": (1, "x")}])
