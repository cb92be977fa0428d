#!/usr/bin/env bash
# One command sets everything up: a virtual environment in .venv with specflash and its dev tools.
# torch is pinned to the CPU build first so pip does not pull the multi-GB CUDA wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet "torch==2.13.0"
.venv/bin/pip install --quiet -e ".[dev]"
