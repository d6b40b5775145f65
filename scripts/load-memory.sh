#!/usr/bin/env bash
# Bounded load run on loopback (127.0.0.1 only): the memory server's handlers with the whole
# tower-scope stack and with no layer, on one SQLite file, runs alternated (issue 17, item 3).
# Each phase stops by itself after SECS seconds; an unexpected status fails the run.
#
#   scripts/load-memory.sh [SECS=3] [CONNECTIONS=16] [ROUNDS=2]
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --bench load_memory --features axum,jwt,aws-lc,sqlite,postgres,cors,log,authz -- \
    "${1:-3}" "${2:-16}" "${3:-2}"
