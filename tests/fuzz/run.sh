#!/bin/sh
# Builds the libFuzzer targets in tests/fuzz (the config loader, the
# path helpers, the exclude patterns and the state file with its journal)
# with clang, ASan, UBSan and LeakSanitizer, and runs each for SECONDS on
# a copy of its seed corpus.
# All run at once.  Exits 1 when any finds a crash, a leak, a timeout or an
# out-of-memory, after printing the input and how to reproduce it; 77
# (the automake SKIP code) when clang, its libFuzzer runtime, inih or
# libuv is missing; 0 otherwise.
#
# Usage: tests/fuzz/run.sh SRCDIR BUILDDIR SECONDS
#   SRCDIR    top of the source tree
#   BUILDDIR  where to build; binaries and logs go to BUILDDIR/fuzz/
#   SECONDS   how long to fuzz each target; 0 only runs the seed corpus
#             (a quick regression check)
#
# Environment: FUZZ_CC (default clang), AR (default ar), FUZZ_CFLAGS
# (added to the compiler flags), FUZZ_ARGS (added to the libFuzzer
# arguments), FUZZ_SOURCES (base names of the src/*.c to build; the
# default, set below, is the core and what the targets call of the rest).
set -eu

me=tests/fuzz/run.sh

usage() {
	echo "usage: $me SRCDIR BUILDDIR SECONDS" >&2
	exit 2
}

skip() {
	echo "$me: SKIP: $*" >&2
	echo "$me: on Debian: apt-get install -y clang libclang-rt-14-dev" \
		"libinih-dev libuv1-dev pkg-config binutils" >&2
	exit 77
}

[ $# -eq 3 ] || usage
case $3 in
'' | *[!0-9]*) usage ;;
esac
[ -f "$1/tests/fuzz/fuzz_conf.c" ] || {
	echo "$me: $1 is not the source tree (no tests/fuzz/fuzz_conf.c)" >&2
	exit 2
}
srcdir=$(cd "$1" && pwd)
mkdir -p "$2/fuzz"
out=$(cd "$2/fuzz" && pwd)
seconds=$3

cc=${FUZZ_CC:-clang}
ar=${AR:-ar}
# The library code the targets reach, never the daemon's event loop
# (sync, watch, debounce, notify, main).
sources=${FUZZ_SOURCES:-array log flush fsutil ignore listing pathset snapshot statahead state store thread writer conf command launch}
san="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
cflags="-std=c11 -g -O1 -fno-omit-frame-pointer $san -Wall -Wextra ${FUZZ_CFLAGS:-}"

command -v "$cc" >/dev/null 2>&1 || skip "$cc not found"
command -v "$ar" >/dev/null 2>&1 || skip "$ar not found"
command -v pkg-config >/dev/null 2>&1 || skip "pkg-config not found"
# conf.c uses inih; nothing the targets need uses libuv.
pkgs="inih"
for p in $pkgs; do
	pkg-config --exists "$p" || skip "$p (pkg-config $p) not found"
done
# shellcheck disable=SC2086
pkg_cflags=$(pkg-config --cflags $pkgs)
# shellcheck disable=SC2086
pkg_libs=$(pkg-config --libs $pkgs)

# Does the compiler have the libFuzzer runtime?
cat >"$out/probe.c" <<'EOF'
#include <stddef.h>
#include <stdint.h>
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	(void)data;
	(void)size;
	return 0;
}
EOF
# shellcheck disable=SC2086 # word splitting of the flag lists is intended
if ! "$cc" $cflags -fsanitize=fuzzer -o "$out/probe" "$out/probe.c" \
	>"$out/probe.log" 2>&1; then
	cat "$out/probe.log" >&2
	skip "$cc cannot build a libFuzzer target (-fsanitize=fuzzer)"
fi
rm -f "$out/probe" "$out/probe.c" "$out/probe.log"

# What configure would define; the sources include "config.h" first.
cat >"$out/config.h" <<'EOF'
/* For the fuzz build only: what configure would define. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#define PACKAGE "atomsync"
#define PACKAGE_NAME "atomsync"
#define PACKAGE_VERSION "fuzz"
#define VERSION "fuzz"
EOF

echo "$me: building in $out"
# The sources the targets need, into an archive (a target links only the
# objects it uses).  Names in the list with no src/NAME.c are skipped.
rm -rf "$out/obj" "$out/core.a"
mkdir -p "$out/obj"
objs=
for b in $sources; do
	c=$srcdir/src/$b.c
	[ -f "$c" ] || continue
	# shellcheck disable=SC2086
	"$cc" $cflags -fsanitize=fuzzer-no-link -I"$out" -I"$srcdir/src" \
		$pkg_cflags -c -o "$out/obj/$b.o" "$c"
	objs="$objs $out/obj/$b.o"
done
# shellcheck disable=SC2086
"$ar" rcs "$out/core.a" $objs
for t in conf path ignore state; do
	# shellcheck disable=SC2086
	if ! "$cc" $cflags -fsanitize=fuzzer -I"$out" -I"$srcdir/src" \
		$pkg_cflags -o "$out/fuzz_$t" "$srcdir/tests/fuzz/fuzz_$t.c" \
		"$out/core.a" $pkg_libs; then
		echo "$me: linking fuzz_$t failed; on undefined references," \
			"add the src/*.c defining them to FUZZ_SOURCES in $me" >&2
		exit 1
	fi
done

symbolizer=$(command -v llvm-symbolizer || true)
for s in /usr/lib/llvm-*/bin/llvm-symbolizer; do
	[ -z "$symbolizer" ] && [ -x "$s" ] && symbolizer=$s
done
if [ -n "$symbolizer" ] && [ -z "${ASAN_SYMBOLIZER_PATH:-}" ]; then
	ASAN_SYMBOLIZER_PATH=$symbolizer
	export ASAN_SYMBOLIZER_PATH
fi
ASAN_OPTIONS="detect_leaks=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export ASAN_OPTIONS UBSAN_OPTIONS

# fuzz NAME MAX_LEN [ARGS...]: one target on a fresh copy of its corpus.
fuzz() {
	name=$1 maxlen=$2
	shift 2
	work=$out/work/$name
	if [ -d "$work" ]; then
		chmod -R u+w "$work"
		rm -rf "$work"
	fi
	mkdir -p "$work/corpus" "$work/artifacts"
	cp -R "$srcdir/tests/fuzz/corpus/$name/." "$work/corpus/"
	chmod -R u+w "$work/corpus"
	set -- -timeout=10 -rss_limit_mb=2048 -max_len="$maxlen" -error_exitcode=1 \
		-print_final_stats=1 -artifact_prefix="$work/artifacts/" "$@"
	if [ "$seconds" -eq 0 ]; then
		# Each seed once, as a regression test.
		set -- "$@" "$work/corpus"/*
	else
		set -- "$@" -max_total_time="$seconds" "$work/corpus"
	fi
	# shellcheck disable=SC2086 # FUZZ_ARGS is a list of options
	"$out/fuzz_$name" "$@" ${FUZZ_ARGS:-}
}

# report NAME STATUS: prints the outcome; fails on any finding.
report() {
	name=$1 status=$2 log=$out/$1.log
	found=
	for a in "$out/work/$name/artifacts"/*; do
		[ -e "$a" ] || continue
		case ${a##*/} in
		slow-unit-*) echo "$me: fuzz_$name: slow input $a" ;;
		*) found="$found $a" ;;
		esac
	done
	grep -E '^(stat::|Done |#[0-9]+[[:space:]]+DONE )' "$log" |
		sed "s|^|$me: fuzz_$name: |" || true
	if [ "$status" -eq 0 ] && [ -z "$found" ]; then
		echo "$me: fuzz_$name: OK"
		return 0
	fi
	echo "$me: fuzz_$name: FAILED (exit $status); the end of $log:" >&2
	tail -n 80 "$log" >&2
	for a in $found; do
		echo "$me: fuzz_$name: crash input: $a" >&2
		echo "$me: fuzz_$name: reproduce: $out/fuzz_$name $a" >&2
		seed=
		for f in "$srcdir/tests/fuzz/corpus/$name"/*; do
			if cmp -s "$a" "$f"; then
				seed=$f
				break
			fi
		done
		if [ -n "$seed" ]; then
			echo "$me: fuzz_$name: it is the seed $seed" >&2
		else
			echo "$me: fuzz_$name: keep it as a regression seed:" \
				"cp $a $srcdir/tests/fuzz/corpus/$name/" >&2
		fi
	done
	if [ -z "$found" ]; then
		# A seed run one by one: the last one started is the culprit.
		last=$(sed -n 's/^Running: //p' "$log" | tail -n 1)
		if [ -n "$last" ]; then
			seed=$srcdir/tests/fuzz/corpus/$name/${last##*/}
			echo "$me: fuzz_$name: crash input: $seed" >&2
			echo "$me: fuzz_$name: reproduce: $out/fuzz_$name $seed" >&2
		else
			echo "$me: fuzz_$name: no input was saved; see $log" >&2
		fi
	fi
	return 1
}

if [ "$seconds" -eq 0 ]; then
	echo "$me: running the seed corpora"
else
	echo "$me: fuzzing each target for $seconds s"
fi
fuzz conf 16384 -dict="$srcdir/tests/fuzz/conf.dict" >"$out/conf.log" 2>&1 &
pid_conf=$!
fuzz path 10000 -dict="$srcdir/tests/fuzz/path.dict" >"$out/path.log" 2>&1 &
pid_path=$!
fuzz ignore 4096 -dict="$srcdir/tests/fuzz/ignore.dict" >"$out/ignore.log" 2>&1 &
pid_ignore=$!
fuzz state 16384 -dict="$srcdir/tests/fuzz/state.dict" >"$out/state.log" 2>&1 &
pid_state=$!
st_conf=0
wait "$pid_conf" || st_conf=$?
st_path=0
wait "$pid_path" || st_path=$?
st_ignore=0
wait "$pid_ignore" || st_ignore=$?
st_state=0
wait "$pid_state" || st_state=$?

failed=0
report conf "$st_conf" || failed=1
report path "$st_path" || failed=1
report ignore "$st_ignore" || failed=1
report state "$st_state" || failed=1
exit $failed
