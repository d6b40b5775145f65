#!/usr/bin/env bash
# Instructions per request of issue 17's target rows, counted by valgrind's callgrind inside the
# request loop only (VMs here expose no hardware counters to `perf stat`): deterministic where
# timings on a shared machine are not. Instructions are not nanoseconds (a cache miss or a
# SHA-NI instruction is one instruction), so the targets are still judged on `peer-bench.sh`'s
# alternated timings; this shows where a change moved the work.
#
#   scripts/peer-instructions.sh                 # the default rows
#   scripts/peer-instructions.sh HS256:tower-scope:valid RS256:jwks-cached:valid
set -euo pipefail
cd "$(dirname "$0")/../benches/peers"
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
cargo bench --bench peers --no-run 2>/dev/null
target=${CARGO_TARGET_DIR:-target}
bin=$(ls -t "$target"/release/deps/peers-* | grep -v '\.d$' | head -n 1)
count=${COUNT:-20000}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
rows=("$@")
[ ${#rows[@]} -gt 0 ] || rows=(
    HS256:bare:missing HS256:bare07:missing
    HS256:tower-scope:valid HS256:jwt-authorizer:valid
    HS256:tower-scope:missing HS256:jwt-authorizer:missing
    RS256:jwks-cached:valid HS256:jwks-cached:valid
    HS256:jwks:bad-signature HS256:jwks-cached:bad-signature
)
printf '%-34s %12s\n' row "instr/request"
for row in "${rows[@]}"; do
    file="$out/${row//:/_}"
    PEER_COUNT=$row COUNT=$count valgrind --tool=callgrind --toggle-collect='*count_loop*' \
        --callgrind-out-file="$file" "$bin" >/dev/null 2>&1
    total=$(awk '/^(summary|totals):/ {print $2; exit}' "$file")
    printf '%-34s %12d\n' "$row" "$(( total / count ))"
done
