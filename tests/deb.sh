#!/bin/sh
# Builds the Debian package from a copy of the tree in OUTDIR, with the
# hardening flags and -Werror, and checks it with lintian.  With
# --install, also installs it in a Debian 12 root, upgrades it to a
# rebuild with the next revision, removes and purges it: the conffile and
# the service's enablement are checked, and a published target must
# survive it all; then builds a program against libatomsync-dev there.
#
# Usage: tests/deb.sh [--install] OUTDIR
# Exit status 77: dpkg-buildpackage is not installed.
# The root is debootstrapped once, in ATOMSYNC_DEB_ROOT
# (/var/tmp/atomsync-deb-root by default), and reused.
set -eu
install=0
if [ "${1:-}" = "--install" ]; then
	install=1
	shift
fi
out=${1:?usage: tests/deb.sh [--install] OUTDIR}
top=$(cd "$(dirname "$0")/.." && pwd)
if ! command -v dpkg-buildpackage >/dev/null 2>&1; then
	echo "deb: dpkg-buildpackage not found" >&2
	exit 77
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)

version=$(sed -n 's/^AC_INIT(\[atomsync\], \[\([^]]*\)\].*/\1/p' "$top/configure.ac")
debversion=$(dpkg-parsechangelog -l "$top/debian/changelog" -S Version)
if [ "${debversion%-*}" != "$version" ]; then
	echo "deb: debian/changelog has $debversion, configure.ac $version" >&2
	exit 1
fi
arch=$(dpkg --print-architecture)

# copy_tree DIR: the sources as git knows them (ignored build products
# left out), or the whole tree but for builds when it is not a checkout.
copy_tree() {
	rm -rf "$1"
	mkdir -p "$1"
	if git -C "$top" rev-parse --git-dir >/dev/null 2>&1; then
		(cd "$top" && git ls-files -z --cached --others --exclude-standard |
			xargs -0 cp --parents -t "$1")
	else
		(cd "$top" && tar -c --exclude=./_build --exclude='./build-*' .) |
			tar -x -C "$1"
	fi
}

# build DIR [VAR=VALUE...]: dpkg-buildpackage in DIR, products beside it.
build() {
	dir=$1
	shift
	if ! (cd "$dir" && env DEB_CFLAGS_APPEND=-Werror "$@" \
		dpkg-buildpackage -us -uc -b >../build.log 2>&1); then
		tail -n 40 "$dir/../build.log" >&2
		echo "deb: dpkg-buildpackage failed; the log: $dir/../build.log" >&2
		exit 1
	fi
}

# Products go to the parent of the tree: one directory per build.
src1=$out/1/atomsync-$version
copy_tree "$src1"
build "$src1"
deb1=$out/1/atomsync_${debversion}_$arch.deb
changes=$out/1/atomsync_${debversion}_$arch.changes
rc=0
lintian --fail-on error,warning "$changes" >"$out/lintian.log" 2>&1 || rc=$?
grep -v '^running with root privileges' "$out/lintian.log" >&2 || true
if [ $rc -ne 0 ]; then
	echo "deb: lintian reports errors or warnings" >&2
	exit 1
fi

# The library is split the Debian way: the shared object under its SONAME
# in libatomsync0, what a build needs in libatomsync-dev, and nothing of
# it in atomsync, whose atomsyncd links the core in statically.
lib1=$out/1/libatomsync0_${debversion}_$arch.deb
dev1=$out/1/libatomsync-dev_${debversion}_$arch.deb
for d in "$deb1" "$lib1" "$dev1"; do
	[ -f "$d" ] || { echo "deb: $(basename "$d") was not built" >&2; exit 1; }
done
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
libdir=./usr/lib/$multiarch
# has DEB PATH...: each PATH is in DEB.
has() {
	d=$1
	shift
	for f in "$@"; do
		dpkg-deb -c "$d" | awk '{ print $6 }' | grep -qxF "$f" ||
			{ echo "deb: $(basename "$d") lacks $f" >&2; exit 1; }
	done
}
has "$lib1" "$libdir/libatomsync.so.0"
if [ "$(dpkg-deb -c "$lib1" | awk '{ print $6 }' | grep -c '^\./usr/lib/.*\.so')" -ne 2 ]; then
	echo "deb: libatomsync0 holds more than libatomsync.so.0 and its file" >&2
	exit 1
fi
has "$dev1" ./usr/include/atomsync.h "$libdir/libatomsync.so" \
	"$libdir/libatomsync.a" "$libdir/pkgconfig/atomsync.pc" \
	./usr/share/man/man3/atomsync_write.3.gz \
	./usr/share/man/man3/atomsync_writer_open.3.gz \
	./usr/share/doc/libatomsync-dev/examples/render.c
if dpkg-deb -c "$deb1" | awk '{ print $6 }' |
	grep -E 'libatomsync|atomsync\.(h|pc)$|/man3/|render\.c'; then
	echo "deb: atomsync holds files of the library" >&2
	exit 1
fi
x=$out/1/extract
rm -rf "$x"
mkdir -p "$x"
dpkg-deb -x "$deb1" "$x/atomsync"
dpkg-deb -x "$lib1" "$x/lib"
if objdump -p "$x/atomsync/usr/sbin/atomsyncd" | grep -q 'NEEDED.*libatomsync'; then
	echo "deb: atomsyncd needs libatomsync.so" >&2
	exit 1
fi
if dpkg-deb -f "$deb1" Depends | grep -q libatomsync; then
	echo "deb: atomsync depends on libatomsync0, which atomsyncd does not load" >&2
	exit 1
fi
objdump -p "$x/lib/usr/lib/$multiarch/libatomsync.so.0" | grep -q 'SONAME *libatomsync\.so\.0$' ||
	{ echo "deb: libatomsync.so.0 lacks its SONAME" >&2; exit 1; }
dpkg-deb -f "$dev1" Depends | grep -qF "libatomsync0 (= $debversion)" ||
	{ echo "deb: libatomsync-dev does not depend on libatomsync0 (= $debversion)" >&2; exit 1; }
dpkg-deb --ctrl-tarfile "$lib1" | tar -t | grep -qx './symbols' ||
	{ echo "deb: libatomsync0 has no symbols file" >&2; exit 1; }
echo "deb: built and lintian-clean: $deb1 $lib1 $dev1"
[ $install -eq 1 ] || exit 0

# The same version with the next revision, and a change to the shipped
# config, so that an upgrade has a conffile to decide about.
rev=${debversion##*-}
debversion2=${debversion%-*}-$((rev + 1))
src2=$out/2/atomsync-$version
copy_tree "$src2"
{
	printf 'atomsync (%s) unstable; urgency=medium\n\n' "$debversion2"
	printf '  * Rebuild to test upgrades.\n\n'
	printf ' -- %s  %s\n\n' "$(dpkg-parsechangelog -l "$top/debian/changelog" -S Maintainer)" \
		"$(date -R)"
	cat "$top/debian/changelog"
} >"$src2/debian/changelog"
echo "# revision $debversion2" >>"$src2/etc/atomsync.conf"
build "$src2" DEB_BUILD_OPTIONS=nocheck
deb2=$out/2/atomsync_${debversion2}_$arch.deb
echo "deb: built $deb2"

exec "$top/tests/deb-root.sh" "$deb1" "$deb2" "$lib1" "$dev1"
