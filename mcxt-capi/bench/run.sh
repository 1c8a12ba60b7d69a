#!/usr/bin/env bash
# Builds libmcxt (release) and runs the C benchmark against it, linked
# statically and dynamically. Usage: mcxt-capi/bench/run.sh [iterations]
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -p mcxt-capi
target=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
out="$target/release/mcxt-capi-bench"
mkdir -p "$out"
CC=${CC:-cc}
"$CC" -std=gnu11 -O2 -Wall -Wextra -Werror -Imcxt-capi/include mcxt-capi/bench/bench.c \
  "$target/release/libmcxt.a" -lpthread -ldl -lm -lrt -lutil -lgcc_s -o "$out/bench-static"
"$CC" -std=gnu11 -O2 -Wall -Wextra -Werror -Imcxt-capi/include mcxt-capi/bench/bench.c \
  -L"$target/release" -lmcxt -Wl,-rpath,"$target/release" -o "$out/bench-shared"
echo "== libmcxt.a (static)"
"$out/bench-static" "$@"
echo "== libmcxt.so (shared)"
"$out/bench-shared" "$@"
