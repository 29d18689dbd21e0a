#!/bin/sh
# The man pages render without a warning.
set -eu
pages="docs/atomsyncd.8 docs/atomsync.conf.5 docs/atomsync_write.3"
for p in $pages; do
	[ -f "$p" ] || { echo "missing $p" >&2; exit 1; }
done
if command -v mandoc >/dev/null 2>&1; then
	# shellcheck disable=SC2086
	out=$(mandoc -Tlint -W warning $pages 2>&1 || true)
else
	# shellcheck disable=SC2086
	out=$(groff -mdoc -Tutf8 -ww -z $pages 2>&1 || true)
fi
if [ -n "$out" ]; then
	echo "$out" >&2
	exit 1
fi
echo "man pages clean"
