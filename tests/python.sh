#!/bin/sh
# docs/examples/atomsync.py publishes through ctypes against the built
# libatomsync.so (not run in the sanitizer build: see Makefile.am).
set -eu
me=tests/python.sh
top=${ATOMSYNC_BUILDDIR:?run by make check}
srcdir=${srcdir:-.}
command -v python3 >/dev/null 2>&1 || {
	echo "$me: python3 is needed (scripts/deps.sh installs it)" >&2
	exit 99
}
fail() { echo "$me: $*" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export ATOMSYNC_LIB="$top/src/.libs/libatomsync.so.0"
py() { python3 "$srcdir/docs/examples/atomsync.py" "$@"; }
gen=$(py "$work/t" motd=hello "conf/app.ini=[app]") || fail "atomsync.py failed"
[ "$(readlink "$work/t/..data")" = "$gen" ] || fail "..data is not $gen"
[ "$(readlink "$work/t/conf")" = ..data/conf ] || fail "no visible link conf"
[ "$(cat "$work/t/motd")" = hello ] || fail "motd: $(cat "$work/t/motd")"
[ "$(cat "$work/t/conf/app.ini")" = "[app]" ] || fail "conf/app.ini"
[ "$(py "$work/t" motd=hello "conf/app.ini=[app]")" = "$gen" ] ||
	fail "an unchanged payload was written again"
err=$(py "$work/t" /etc/passwd=x 2>&1) && fail "an absolute path was taken"
case $err in *"invalid path /etc/passwd: must be a relative path"*) ;;
*) fail "unexpected error: $err" ;; esac
[ "$(readlink "$work/t/..data")" = "$gen" ] || fail "a refused payload changed ..data"
echo "python: atomsync.py publishes through ctypes"
