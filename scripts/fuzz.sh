#!/usr/bin/env bash
# Bounded coverage-guided fuzzing of every parser of untrusted bytes (issue 9), then the kill, disk and
# hostile-file tests; prints one table. Usage: scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 120)
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Targets are built without a
# sanitizer (the code under test is safe Rust) but with overflow checks, and with an allocator that aborts
# on any single allocation above 64 MiB. A finding lands in fuzz/artifacts/TARGET/; copy it into
# fuzz/regressions/TARGET/ once fixed, where tests/fuzz_regressions.rs replays it on every test run.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-120}
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$PWD/fuzz/target}
targets=(safetensors optimizer npz idx png config spec)
command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz is missing: cargo install cargo-fuzz" >&2; exit 2; }
(cd fuzz && cargo +nightly fuzz build -s none -a --release)
rows=()
failed=0
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  log="fuzz/artifacts/$t/last-run.log"
  set +e
  (cd fuzz && cargo +nightly fuzz run -s none -a --release "$t" "corpus/$t" "seeds/$t" -- \
     -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 -timeout=10 -print_final_stats=1) >"$log" 2>&1
  rc=$?
  set -e
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
  found=$(find "fuzz/artifacts/$t" -type f \( -name 'crash-*' -o -name 'oom-*' -o -name 'timeout-*' \) | wc -l)
  rows+=("| $t | $secs | $runs | $corpus | $found |")
  if [ "$rc" -ne 0 ] || [ "$found" -ne 0 ]; then failed=1; echo "== $t: finding, see $log" >&2; tail -20 "$log" >&2; fi
done
echo
echo "| target | seconds | executions | corpus | findings |"
echo "|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
# The kill, disk and hostile-file tests, with their counts.
CARGO_TARGET_DIR=${MAIN_TARGET_DIR:-$PWD/target} cargo test --release -p diffuse --test robustness \
  --test fuzz_regressions -- --nocapture 2>&1 | grep -E '^(SIGKILL|disk|changed bytes|[a-zA-Z ]+: [0-9]+$|SKIPPED|test result)'
exit $failed
