#!/usr/bin/env bash
# Re-resolve pyproject.toml's dependency ranges in a clean venv and write requirements.lock.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q --upgrade pip
"$tmp/venv/bin/pip" install -q ".[postgresql,dev]"
{
  echo "# Exact versions of every package maild and its tests install (runtime, PostgreSQL driver, pytest, ruff)."
  echo "# Regenerate after changing pyproject.toml: scripts/lock.sh"
  "$tmp/venv/bin/pip" freeze --exclude-editable | grep -v '^maild'
} > requirements.lock
echo "wrote requirements.lock"
