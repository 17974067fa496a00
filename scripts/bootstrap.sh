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

# npm tools in .tools/ (git-ignored): buf (tests/unit/test_buf.py: lint, format and breaking
# checks of protos/) and the Node.js gRPC client of the README's walkthrough
# (tests/integration/test_walkthrough.py). Pinned; reinstalled only when the list changes.
NPM_PACKAGES="@bufbuild/buf@1.75.0 @grpc/grpc-js@1.14.7 @grpc/proto-loader@0.8.1"
if [ "$(cat .tools/.installed 2>/dev/null)" != "$NPM_PACKAGES" ]; then
  if command -v npm >/dev/null; then
    # shellcheck disable=SC2086 - the list is words on purpose
    npm install --prefix .tools --save-exact --ignore-scripts --no-audit --no-fund --silent \
      $NPM_PACKAGES
    echo "$NPM_PACKAGES" > .tools/.installed
  elif [ "${CI:-}" = true ]; then
    echo "bootstrap: npm is needed (buf, the Node.js walkthrough)" >&2
    exit 1
  else
    echo "bootstrap: no npm, so no buf and no Node.js client; their tests will skip" >&2
  fi
fi
