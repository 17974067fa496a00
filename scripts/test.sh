#!/usr/bin/env bash
# The whole test suite (unit, services on loopback, integration, Ray, e2e) on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh
export RAY_USAGE_STATS_ENABLED=0
.venv/bin/ruff check .
.venv/bin/mypy
.venv/bin/python -m pytest -q "$@"
