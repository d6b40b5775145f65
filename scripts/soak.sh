#!/usr/bin/env bash
# Soak on loopback (127.0.0.1 only), not part of CI: the memory server's stack behind a
# JwksAuthenticator with a token cache, in its own process, under steady load from four users
# while the mock issuer rotates its signing key; VmRSS of the server after warm-up and at the
# end must differ by less than 10 %. Stops by itself after SECS seconds.
#
#   scripts/soak.sh [SECS=600] [WARMUP=60] [ROTATE=60] [WORKERS=8] [RATE=200 requests/s]
set -euo pipefail
cd "$(dirname "$0")/.."
export SOAK_SECS="${1:-600}" SOAK_WARMUP_SECS="${2:-60}" SOAK_ROTATE_SECS="${3:-60}" SOAK_WORKERS="${4:-8}" SOAK_RATE="${5:-200}"
exec cargo test --all-features --test soak -- --ignored --exact soak_memory_stays_flat --nocapture
