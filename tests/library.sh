#!/bin/sh
# libatomsync as a program outside the tree sees it: the shared library
# exports atomsync_* alone, and the static one defines no other global;
# make install puts the library, header, .pc file and man pages in
# place; docs/examples/render.c and the EXAMPLES program of
# atomsync_write(3) build with pkg-config against the installed library
# (shared and static) and publish what a Kubernetes consumer expects,
# and so does a program with functions named like the library's own.
set -eu
me=tests/library.sh
top=${ATOMSYNC_BUILDDIR:?run by make check}
srcdir=${srcdir:-.}
cc=${CC:-cc}
# The sanitizer build's library needs its runtime in the program.
flags="-std=gnu11 -Wall -Wextra -Werror ${SAN_FLAGS:-}"
fail() { echo "$me: $*" >&2; exit 1; }

so=$top/src/.libs/libatomsync.so
[ -f "$so" ] || fail "no $so"
bad=$(nm -D --defined-only "$so" | awk '{print $3}' |
	grep -v -E '^atomsync_[a-z_]+@@ATOMSYNC_0$|^ATOMSYNC_0$' || true)
[ -z "$bad" ] || fail "exports more than atomsync_*: $bad"
nm -D --defined-only "$so" | grep -q ' T atomsync_write@@ATOMSYNC_0$' ||
	fail "atomsync_write is not exported"
readelf -d "$so" | grep -q 'SONAME.*\[libatomsync\.so\.0\]' ||
	fail "SONAME is not libatomsync.so.0"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dest=$work/dest
# The test runs inside make check: a clean make for the install.
env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s -C "$top" install \
	DESTDIR="$dest" >"$work/install.log" 2>&1 ||
	{ cat "$work/install.log" >&2; fail "make install failed"; }
dirs=$(env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s -C "$top" -f Makefile \
	-f - print-dirs <<'MK'
print-dirs:
	@echo "$(libdir)|$(includedir)|$(mandir)"
MK
)
libdir=${dirs%%|*}; rest=${dirs#*|}
includedir=${rest%%|*}; mandir=${rest#*|}
for f in "$libdir/libatomsync.so.0" "$libdir/libatomsync.so" \
	"$libdir/libatomsync.a" "$libdir/pkgconfig/atomsync.pc" \
	"$includedir/atomsync.h" "$mandir/man3/atomsync_write.3" \
	"$mandir/man3/atomsync_writer_open.3"; do
	[ -e "$dest$f" ] || fail "make install: missing $f"
done

# pkg-config as a program built against the installed tree uses it.
pc() {
	PKG_CONFIG_PATH="$dest$libdir/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$dest" \
		pkg-config "$@" atomsync
}
# shellcheck disable=SC2046
$cc $flags -o "$work/render" "$srcdir/docs/examples/render.c" $(pc --cflags --libs) ||
	fail "render.c does not build against the installed library"
# shellcheck disable=SC2046
$cc $flags -o "$work/render-static" "$srcdir/docs/examples/render.c" \
	$(pc --cflags) "$dest$libdir/libatomsync.a" ||
	fail "render.c does not build against libatomsync.a"
export LD_LIBRARY_PATH="$dest$libdir"
ldd "$work/render" | grep -q "$dest$libdir/libatomsync.so.0" ||
	fail "render does not use the installed library"

# check_consumer TARGET NAME [CONTENT]: what a Kubernetes consumer reads.
check_consumer() {
	[ "$(readlink "$1/$2")" = "..data/$2" ] || fail "$1/$2 is not ..data/$2"
	gen=$(readlink "$1/..data") || fail "$1/..data is not a link"
	case $gen in ..[0-9][0-9][0-9][0-9]_*) ;; *) fail "..data -> $gen" ;; esac
	[ -d "$1/$gen" ] || fail "$1/$gen is not a directory"
	[ $# -lt 3 ] || [ "$(cat "$1/$2")" = "$3" ] || fail "$1/$2 holds $(cat "$1/$2")"
}
for r in render render-static; do
	t=$work/target-$r
	out=$("$work/$r" "$t" listen=8080 workers=4) || fail "$r failed"
	case $out in "published ..2"*) ;; *) fail "$r: $out" ;; esac
	check_consumer "$t" keys # a directory behind its link
	[ "$(cat "$t/keys/workers")" = 4 ] || fail "$r: keys/workers"
	[ "$(stat -c %a "$t/keys/workers")" = 600 ] || fail "$r: keys/workers mode"
	check_consumer "$t" app.conf "# rendered by render
listen = 8080
workers = 4"
	again=$("$work/$r" "$t" listen=8080 workers=4)
	[ "$again" = "unchanged ${out#published }" ] || fail "$r rewrote: $again"
	next=$("$work/$r" "$t" listen=9090)
	case $next in "published ..2"*) ;; *) fail "$r: $next" ;; esac
	[ ! -e "$t/keys/workers" ] || fail "$r: keys/workers outlived its key"
	err=$("$work/$r" "$t" ../x=1 2>&1) && fail "$r took ../x"
	case $err in *"invalid path keys/../x: must not contain '..'") ;;
	*) fail "$r: $err" ;; esac
	[ "$(cat "$t/app.conf")" = "# rendered by render
listen = 9090" ] || fail "$r: a refused payload changed app.conf"
done

# The static archive defines, of every kind of global (text, data, bss,
# weak, common...), the very symbols libatomsync.so exports: the core's
# log_msg or array_grow would clash with a program's own.
api=$(nm -D --defined-only "$so" | awk '$3 ~ /^atomsync_/ { sub(/@.*/, "", $3); print $3 }' | sort)
defs=$(nm -g --defined-only "$dest$libdir/libatomsync.a" | awk 'NF == 3 { print $3 }' | sort)
bad=$(echo "$defs" | grep -v -x -F "$api" | tr '\n' ' ' || true)
[ -z "$bad" ] || fail "libatomsync.a defines more than atomsync_*: $bad"
[ "$defs" = "$api" ] ||
	fail "libatomsync.a defines $(echo $defs), not all of $(echo $api)"

# A program with its own log_msg, array_grow, writer_open and
# snapshot_take (names of the core's functions) links against the
# archive, calls its own functions and publishes.
cat >"$work/own.c" <<'EOF'
#include <atomsync.h>
#include <stdio.h>
#include <string.h>

static int calls;
int log_msg(const char *s) { calls++; return (int)strlen(s); }
int array_grow(int n) { calls++; return 2 * n; }
int writer_open(void) { calls++; return 7; }
int snapshot_take(int a, int b) { calls++; return a + b; }

int main(int argc, char *argv[])
{
	struct atomsync_file ok = {"app.conf", "own = 1\n", 8, 0644};
	struct atomsync_file bad = {"../x", "", 0, 0644};
	struct atomsync_writer *w = NULL;

	if (argc != 2 || atomsync_writer_open(argv[1], NULL, &w) != 0 ||
	    atomsync_write(w, &ok, 1) != 0) {
		fprintf(stderr, "own: %s\n", w ? atomsync_writer_error(w) : "usage");
		return 1;
	}
	/* A refusal has the library format its message. */
	if (atomsync_write(w, &bad, 1) == 0 ||
	    strstr(atomsync_writer_error(w), "../x") == NULL) {
		fprintf(stderr, "own: ../x was not refused\n");
		return 1;
	}
	if (calls != 0) {
		fprintf(stderr, "own: the library called %d of ours\n", calls);
		return 1;
	}
	if (log_msg("abc") != 3 || array_grow(2) != 4 || writer_open() != 7 ||
	    snapshot_take(1, 2) != 3) {
		fprintf(stderr, "own: our functions are not ours\n");
		return 1;
	}
	printf("published %s\n", atomsync_writer_generation(w));
	atomsync_writer_close(w);
	return 0;
}
EOF
# shellcheck disable=SC2046
$cc $flags -o "$work/own" "$work/own.c" $(pc --cflags) \
	"$dest$libdir/libatomsync.a" >"$work/own.log" 2>&1 ||
	{ cat "$work/own.log" >&2; fail "a program with a log_msg of its own does not link against libatomsync.a"; }
out=$("$work/own" "$work/target-own") || fail "own failed"
case $out in "published ..2"*) ;; *) fail "own: $out" ;; esac
check_consumer "$work/target-own" app.conf "own = 1"

# The EXAMPLES of atomsync_write(3), as the installed page has them.
page=$dest$mandir/man3/atomsync_write.3
awk '/^\.Sh EXAMPLES/ { ex = 1 } ex && /^\.Bd -literal$/ { on = 1; next }
	on && /^\.Ed/ { exit } on' "$page" | sed 's/\\e/\\/g' >"$work/publish.c"
grep -q 'atomsync_write(w, files, 2)' "$work/publish.c" ||
	fail "no program in the EXAMPLES of $page"
# shellcheck disable=SC2046
$cc $flags -o "$work/publish" "$work/publish.c" $(pc --cflags --libs) ||
	fail "the EXAMPLES of atomsync_write(3) do not build"
"$work/publish" "$work/man" >/dev/null || fail "the EXAMPLES program failed"
check_consumer "$work/man" app.conf "listen = 8080"
[ "$(stat -c %a "$work/man/..data/tls/ca.pem")" = 640 ] || fail "file_mode not applied"
echo "library: exports, install, pkg-config, render.c, own names beside libatomsync.a and the man page example"
