#!/bin/sh
# man_lint.sh - every man page passes mandoc's linter with no warning.
set -eu
srcdir="${ENGRAM_SRCDIR:-$(dirname "$0")/..}"
status=0
for page in "$srcdir"/man/*.[0-9]; do
	out=$(mandoc -Tlint -W warning "$page" 2>&1) || true
	if [ -n "$out" ]; then
		echo "$out"
		status=1
	else
		echo "ok: $(basename "$page")"
	fi
	# and it renders
	mandoc -Thtml "$page" | grep -q "id=\"NAME\"" || { echo "cannot render $page"; status=1; }
done
exit $status
