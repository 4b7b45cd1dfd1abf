#!/usr/bin/env bash
# fuzz.sh DURATION: run every fuzz target in the module for DURATION each (go test -fuzz
# takes one target at a time). Targets are found by their `func FuzzX(` declarations.
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-5s}
n=0
while IFS=: read -r file name; do
  pkg=./$(dirname "$file")
  echo "fuzz: $pkg $name ($dur)"
  go test -run '^$' -fuzz "^${name}\$" -fuzztime "$dur" "$pkg" >/tmp/offlane-fuzz.$$ 2>&1 || { cat /tmp/offlane-fuzz.$$; rm -f /tmp/offlane-fuzz.$$; exit 1; }
  n=$((n+1))
done < <(grep -rEo --include='*_test.go' '^func (Fuzz[A-Za-z0-9_]+)\(' . | sed -E 's/^\.\///; s/:func (Fuzz[A-Za-z0-9_]+)\(/:\1/' | sort -u)
rm -f /tmp/offlane-fuzz.$$
echo "fuzz: $n targets ok"
