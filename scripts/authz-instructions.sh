#!/usr/bin/env bash
# Instructions per request that AuthorizeLayer adds over the bare service (counted by
# valgrind's callgrind, since VMs often expose no hardware counters to `perf stat`), for each
# variant of benches/authz.rs: deterministic where timings on a shared machine are not. Each variant runs 200,000 requests in its own process; the process's fixed
# cost (startup, runtime) cancels out against the bare run.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
cargo bench --bench authz --features authz --no-run 2>/dev/null
bin=$(ls -t target/release/deps/authz-* | grep -v '\.d$' | head -n 1)
count=200000
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
instructions() {
    AUTHZ_COUNT=$1 valgrind --tool=callgrind --callgrind-out-file="$out/$1" "$bin" >/dev/null 2>&1
    awk '/^(summary|totals):/ {print $2; exit}' "$out/$1"
}
bare=$(instructions bare)
printf '%-12s %s\n' variant "instructions per request over bare"
for variant in derived privileged last first; do
    n=$(instructions "$variant")
    printf '%-12s %s\n' "$variant" "$(( (n - bare) / count ))"
done
printf '%-12s %s\n' bare "$(( bare / count )) per request in total"
