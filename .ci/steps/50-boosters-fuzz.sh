#!/usr/bin/env bash
# The larger booster attack sweep: the differential test over seven models (every header field,
# training parameter and column of each) and 600 hypothesis examples per fuzzer, every accepted
# mutant predicted on in subprocesses.  About 15 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
MILO_BOOSTER_FUZZ=600 python -m pytest -q tests/attacks/test_booster_attacks.py \
    -k "differential or fuzzed"
