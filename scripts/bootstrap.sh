#!/usr/bin/env bash
# Idempotent set-up of a fresh machine: a virtual environment in .venv with the project and its
# test tools installed (editable), and buf (npm) in .tools/. Re-running it is cheap when
# pyproject.toml and BUF_VERSION have not changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.synesthesia-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  # torch/torchvision/torchaudio are pinned to one consistent trio in pyproject.toml
  .venv/bin/python -m pip install --quiet -e ".[test]"
  echo "$want" > "$stamp"
fi

# buf (tests/unit/test_buf.py: lint, format and breaking checks of protos/) from npm into .tools/.
BUF_VERSION=1.75.0
if [ "$(.tools/node_modules/.bin/buf --version 2>/dev/null)" != "$BUF_VERSION" ]; then
  if command -v npm >/dev/null; then
    npm install --prefix .tools --save-exact --ignore-scripts --no-audit --no-fund --silent \
      "@bufbuild/buf@$BUF_VERSION"
  elif [ "${CI:-}" = true ]; then
    echo "bootstrap: npm is needed to install buf" >&2
    exit 1
  else
    echo "bootstrap: no npm, so no buf; tests/unit/test_buf.py will skip" >&2
  fi
fi
