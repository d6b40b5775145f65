#!/usr/bin/env bash
# Bounded load run on loopback (127.0.0.1 only): the bare service, then BearerAuthLayer with a
# JwksAuthenticator with and without its verified-token cache, in one process and one run.
# Each phase stops by itself after SECS seconds; any non-200 answer fails the run.
#
#   scripts/load.sh [SECS=5] [CONNECTIONS=16] [USERS=200]
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --bench load_jwks --features test-util,aws-lc -- "${1:-5}" "${2:-16}" "${3:-200}"
