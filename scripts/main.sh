#!/usr/bin/env bash
# README command 1: set up, then run the main job (latency-targeted pruning on the simulated ZCU104).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
cd "$root"
exec .venv/bin/hw_prune demo "$@"
