#!/usr/bin/env bash
# Runs every fuzz target of fuzz/fuzz_targets/ for SECONDS (default 60),
# the targets side by side (one core each), starting from the committed
# seeds (fuzz/seeds/TARGET) and the local corpus (fuzz/corpus/TARGET,
# ignored by git). Prints libFuzzer's final stats line per target and exits
# non-zero if any target crashed, leaked, timed out or ran out of memory;
# the reproducer is then in fuzz/artifacts/TARGET/ and the log's tail is
# printed.
#
#   fuzz/run.sh          # 60 s per target (what CI runs)
#   fuzz/run.sh 600      # a longer run
#
# Needs the nightly toolchain (sanitizers) and cargo-fuzz; installs the
# latter if missing. Builds once, in release mode with debug assertions and
# AddressSanitizer (cargo-fuzz's defaults).
set -euo pipefail
secs="${1:-60}"
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

if ! cargo +nightly --version >/dev/null 2>&1; then
  rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

targets=()
for f in fuzz/fuzz_targets/*.rs; do
  targets+=("$(basename "$f" .rs)")
done

# One build for all targets (the runs below then find it fresh).
cargo +nightly fuzz build --fuzz-dir fuzz

logs="fuzz/artifacts/logs"
mkdir -p "$logs"
pids=()
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/seeds/$t" "fuzz/artifacts/$t"
  cargo +nightly fuzz run --fuzz-dir fuzz "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
    -max_total_time="$secs" -timeout=10 -print_final_stats=1 \
    >"$logs/$t.log" 2>&1 &
  pids+=($!)
done

status=0
for i in "${!targets[@]}"; do
  t="${targets[$i]}"
  log="$logs/$t.log"
  rc=0
  wait "${pids[$i]}" || rc=$?
  final=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true)
  if [ "$rc" -ne 0 ] || [ -z "$final" ] || grep -qE '^SUMMARY: |ERROR: libFuzzer' "$log"; then
    status=1
    echo "fuzz $t: FAILED (exit $rc); end of $log:"
    tail -n 60 "$log"
    ls -l "fuzz/artifacts/$t" || true
  else
    echo "fuzz $t: ${secs}s, no crash: $final"
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb):' "$log" |
      sed "s/^/  /"
  fi
done
exit "$status"
