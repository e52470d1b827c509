#!/usr/bin/env bash
# Installs the SDK into a temporary prefix, scaffolds a module with `micro new module` outside the
# source tree, builds it against the installed package alone, and loads it with the installed
# `micro`. Then checks that every kind's scaffold compiles.
# Usage: check-install.sh BUILD_DIR
set -euo pipefail
build=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"

cmake --install "$build" --prefix "$work/prefix" >/dev/null
micro="$work/prefix/bin/micro"
test -x "$micro"

"$micro" new module --kind registry --name registry-scaffolded "$work/mod"
cmake -S "$work/mod" -B "$work/mod/build" -G Ninja -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/mod/build" >/dev/null
so="$work/mod/build/registry-scaffolded.so"
exports=$(nm -D --defined-only "$so" | awk '{print $3}')
[ "$exports" = "micro_module_entry" ] || { echo "exports: $exports"; exit 1; }
out=$("$micro" modules inspect "$so")
echo "$out"
grep -q "registry registry-scaffolded" <<<"$out"

# The installed micro finds the installed modules with no configuration.
"$micro" modules list | grep -q "registry-memory"

# Every kind's scaffold compiles against the installed headers.
for kind in codec transport registry selector broker client server service handler; do
  "$micro" new module --kind "$kind" --name "$kind-x" "$work/k-$kind" >/dev/null
  c++ -std=c++17 -Wall -Wextra -Werror -fsyntax-only -I"$work/prefix/include" \
    "$work/k-$kind/src/$kind-x.cpp"
done
echo "install check passed"
