#!/usr/bin/env bash
# Bounded load run on loopback (127.0.0.1 only): the memory server's handlers with the whole
# tower-scope stack and with no layer, on one SQLite file, runs alternated (issue 17, item 3).
# Each phase stops by itself after SECS seconds; an unexpected status fails the run.
#
#   scripts/load-memory.sh [SECS=2] [CONNECTIONS=16] [ROUNDS=8]
#   LOAD_LAYERS=1 scripts/load-memory.sh     # also each layer alone (guard, auth, log) and the
#                                            # stack without the server's outer router
#   LOAD_WORKLOADS=read scripts/load-memory.sh
#
# The ratio is the median over rounds of each round's with / without (runs made next to each
# other), so drift in a shared machine's speed cancels; single runs of this machine vary by
# ±5 %.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --bench load_memory --features axum,jwt,aws-lc,sqlite,postgres,cors,log,authz -- \
    "${1:-2}" "${2:-16}" "${3:-8}"
