#!/usr/bin/env bash
# Runs unit tests under valgrind, in-process (CK_FORK=no) so that every
# test is checked, JOBS at a time (each is one CPU-bound process).  Each
# test's output goes to TEST.vg.log; a failing one's is printed.
#
# Usage: tests/valgrind.sh JOBS TEST...
# Environment: VALGRIND_FLAGS, the flags for valgrind.
# Exit status: 0 when every test passed, 1 when one failed, 2 on misuse.
set -euo pipefail

[ $# -ge 2 ] || {
	echo "usage: tests/valgrind.sh JOBS TEST..." >&2
	exit 2
}
case $1 in
'' | *[!0-9]* | 0)
	echo "tests/valgrind.sh: JOBS must be a positive number, not '$1'" >&2
	exit 2
	;;
esac
jobs=$1
shift

# one TEST: runs it, and leaves TEST.vg.status behind.
one() {
	rc=0
	# shellcheck disable=SC2086 # VALGRIND_FLAGS is a list of options
	CK_FORK=no CK_TIMEOUT_MULTIPLIER=20 ATOMSYNC_VALGRIND=1 \
		valgrind ${VALGRIND_FLAGS:-} "./$1" >"$1.vg.log" 2>&1 || rc=$?
	echo "$rc" >"$1.vg.status"
}

# Started in the order given (longest first balances best), a new one
# as soon as any of the running ones ends.
running=0
for t in "$@"; do
	rm -f "$t.vg.status"
	if [ "$running" -ge "$jobs" ]; then
		wait -n
		running=$((running - 1))
	fi
	echo "valgrind $t"
	one "$t" &
	running=$((running + 1))
done
wait

failed=0
for t in "$@"; do
	rc=$(cat "$t.vg.status" 2>/dev/null || echo "none")
	grep -h '^[0-9]*%: Checks:' "$t.vg.log" | sed "s|^|$t: |" || true
	if [ "$rc" != 0 ]; then
		echo "valgrind $t: FAILED (exit $rc); the end of $t.vg.log:" >&2
		tail -n 60 "$t.vg.log" >&2
		failed=1
	fi
done
exit $failed
