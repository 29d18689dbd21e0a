#!/bin/sh
# The shipped config: as it is, --check-config refuses it for want of a
# mapping (exit status 2); with every example key and the example mapping
# uncommented, it passes, so no example contradicts another.
set -eu
bin=${ATOMSYNCD:?ATOMSYNCD names the binary under test}
conf=${srcdir:-.}/etc/atomsync.conf
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
rc=0
out=$("$bin" --check-config --config "$conf" 2>&1) || rc=$?
case $rc:$out in
2:*"no [sync:NAME] section"*) ;;
*)
	echo "as shipped: exit $rc: $out" >&2
	exit 1
	;;
esac
# "#key = value", its "#    continued" lines, and "#[sync:example]".
sed -e 's/^#\([a-z_]* = \)/\1/' -e 's/^#\(    [^ ]\)/\1/' \
	-e 's/^#\(\[sync:\)/\1/' "$conf" >"$d/all.conf"
grep -q '^\[sync:example\]$' "$d/all.conf"
grep -q '^source = ' "$d/all.conf"
"$bin" --check-config --config "$d/all.conf" >/dev/null 2>"$d/err" || {
	echo "uncommented:" >&2
	cat "$d/err" >&2
	exit 1
}
echo "example config checked"
