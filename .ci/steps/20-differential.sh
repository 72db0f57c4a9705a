#!/usr/bin/env bash
# The full sweep of issue 10's proofs: every mutation operator on every attribute the declared
# invariants read (tests/attacks/test_differential.py), and ten times more fuzzed mutants used
# for prediction (tests/attacks/test_fuzz.py). The README's test command runs a sample of both.
set -euo pipefail
cd "$(dirname "$0")/../.."
MILO_DIFFERENTIAL=full python -m pytest -q -p no:cacheprovider \
    tests/attacks/test_differential.py \
    "tests/attacks/test_fuzz.py::test_accepted_mutants_predict_without_crashing"
