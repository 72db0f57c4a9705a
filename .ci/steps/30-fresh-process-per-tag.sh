#!/usr/bin/env bash
# Every internal scikit-learn class milo_pack allow-lists (CV splitters, losses, kernels,
# scorers...) and every experimental estimator loads first thing in its own new interpreter:
# the registry's answer must not depend on anything loaded before (issue 11). The README's test
# command runs three of them; this step runs all (~80 interpreters, a few minutes).
set -euo pipefail
cd "$(dirname "$0")/../.."
MILO_EVERY_TAG=1 python -m pytest -q tests/test_registry.py -k own_interpreter
