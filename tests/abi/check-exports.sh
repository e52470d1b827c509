#!/bin/sh
# Checks that every module in DIR exports exactly one defined dynamic symbol: micro_module_entry.
# Anything else a module exports (a libstdc++ template instance, a helper) could bind to another
# module's copy of the same name and break it. Usage: check-exports.sh DIR
set -u
dir=${1:?usage: check-exports.sh MODULE_DIR}
status=0
count=0
for module in "$dir"/*.so; do
  [ -e "$module" ] || continue
  count=$((count + 1))
  symbols=$(nm -D --defined-only "$module" | awk '{print $NF}' | sort)
  if [ "$symbols" != "micro_module_entry" ]; then
    echo "FAIL $module exports:"
    echo "${symbols:-(nothing)}" | sed 's/^/  /'
    echo "  (expected only micro_module_entry: build it with micro_add_module(), which applies"
    echo "   cmake/module.map, and hide everything else)"
    status=1
  else
    echo "ok   $module"
  fi
done
if [ "$count" -eq 0 ]; then
  echo "FAIL no module (*.so) in $dir: build the modules first"
  exit 1
fi
exit $status
