#!/usr/bin/env bash
# Shows that Valgrind and AddressSanitizer catch a caller's read of a freed
# (or reset) mcxt chunk, and that LeakSanitizer finds no leak in the fault
# injection test.
#
# The demo is mcxt/examples/read_after_free.rs. Without mcxt's `valgrind`
# or `asan` feature a freed chunk inside a live block is ordinary heap
# memory to the tools, and the read goes unnoticed: that run is shown
# first, as the control. Exits non-zero if any expectation fails.
#
# Needs: valgrind (skipped with a notice if absent), a nightly toolchain
# with rust-src for -Zsanitizer=address.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
failures=0
expect() { # expect <what> <pattern> <expected exit: 0|nonzero> -- command...
  local what=$1 pattern=$2 want=$3; shift 4
  local out rc=0
  out=$("$@" 2>&1) || rc=$?
  if [[ $want == 0 && $rc != 0 ]] || [[ $want != 0 && $rc == 0 ]] || ! grep -q -- "$pattern" <<<"$out"; then
    echo "FAIL  $what (exit $rc, wanted $want, pattern '$pattern')"; echo "$out" | tail -20
    failures=$((failures + 1))
  else
    echo "ok    $what"
  fi
}

if command -v valgrind >/dev/null; then
  cargo build -q -p mcxt --example read_after_free
  expect "valgrind, no feature: the stale read goes unnoticed" "free: read" 0 -- \
    valgrind -q --error-exitcode=99 target/debug/examples/read_after_free free
  cargo build -q -p mcxt --example read_after_free --features valgrind
  for mode in free reset; do
    expect "valgrind feature: read after $mode is an invalid read" "Invalid read of size 1" nonzero -- \
      valgrind -q --error-exitcode=99 target/debug/examples/read_after_free $mode
  done
  expect "valgrind feature: no bad read, no report" "none: read 0" 0 -- \
    valgrind -q --error-exitcode=99 target/debug/examples/read_after_free none
  cargo build -q -p mcxt --features valgrind --tests
  for t in kinds model aset block_cache; do
    exe=$(ls -t target/debug/deps/$t-* | grep -v '\.d$' | head -1)
    expect "valgrind feature: $t tests clean under memcheck" "test result: ok" 0 -- \
      valgrind -q --error-exitcode=99 "$exe" --test-threads 1
  done
else
  echo "skip  valgrind not installed"
fi

# ASan: nightly, instrumented build in its own target directory.
host=$(rustc -vV | sed -n 's/^host: //p')
asan() { RUSTFLAGS="-Zsanitizer=address" CARGO_TARGET_DIR=target/asan cargo +nightly "$@" --target "$host"; }
asan build -q -p mcxt --example read_after_free
expect "asan, no feature: the stale read goes unnoticed" "free: read" 0 -- \
  "target/asan/$host/debug/examples/read_after_free" free
asan build -q -p mcxt --example read_after_free --features asan
expect "asan feature: read after free is a use-after-poison" "use-after-poison" nonzero -- \
  "target/asan/$host/debug/examples/read_after_free" free
expect "asan feature: no bad read, no report" "none: read 0" 0 -- \
  "target/asan/$host/debug/examples/read_after_free" none

# The test suites under ASan with the poisoning on: the allocator's own
# accesses to freed chunks (free-list links, headers carved after a reset)
# must all be declared. LeakSanitizer (part of ASan on Linux) checks at
# exit that nothing leaked: the fault-injection test fails every block
# request in turn, the tree tests create and delete a million contexts.
expect "asan + leaksanitizer: test suites clean, nothing leaks" "test result: ok" 0 -- \
  asan test -q -p mcxt --features asan --test faults --test tree --test model --test kinds --test safe --test aset --test block_cache

if ((failures)); then
  echo "$failures expectation(s) failed"; exit 1
fi
echo "all sanitizer expectations met"
