#!/usr/bin/env bash
# One command runs the checks: ruff, then the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check src tests
.venv/bin/python -m pytest "$@"
