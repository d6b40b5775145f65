#!/usr/bin/env bash
# tower-scope against its peers (issue 17): criterion in benches/peers (its own workspace, so
# tower-scope's `cargo test` never builds the peers), then the ratio table.
#
#   scripts/peer-bench.sh                    # the full run (~4 minutes of timing)
#   PEER_BENCH_QUICK=1 scripts/peer-bench.sh # a short, noisier run
#   scripts/peer-bench.sh HS256              # only rows whose id matches (criterion filter)
#
# Compare ratios within one run only: absolute times move with the machine's load.
set -euo pipefail
cd "$(dirname "$0")/../benches/peers"
exec cargo bench --locked --bench peers -- "$@"
