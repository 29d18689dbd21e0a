#!/bin/sh
# Installs, upgrades, removes and purges the atomsync package in a Debian
# 12 root, as root, and checks what each step leaves: the config is a
# conffile an upgrade keeps once edited, atomsyncd.service is enabled on
# a first installation only when the config maps something, and later
# ones keep the administrator's choice, purge removes
# /etc/atomsync and the enablement, and a published target survives all.
# systemd does not run in the root, so nothing is started there.  Then
# libatomsync-dev: the example program builds with pkg-config against
# it, shared and static, and publishes, and a purge leaves nothing.
#
# Usage: tests/deb-root.sh DEB DEB-OF-THE-NEXT-REVISION LIB-DEB DEV-DEB
# (tests/deb.sh --install builds them).  The root is debootstrapped once, into
# ATOMSYNC_DEB_ROOT (/var/tmp/atomsync-deb-root by default), and reused.
set -eu
deb1=${1:?usage: tests/deb-root.sh DEB NEXT-DEB}
deb2=${2:?usage: tests/deb-root.sh DEB NEXT-DEB LIB-DEB DEV-DEB}
libdeb=${3:?usage: tests/deb-root.sh DEB NEXT-DEB LIB-DEB DEV-DEB}
devdeb=${4:?usage: tests/deb-root.sh DEB NEXT-DEB LIB-DEB DEV-DEB}
root=${ATOMSYNC_DEB_ROOT:-/var/tmp/atomsync-deb-root}
mirror=${ATOMSYNC_DEB_MIRROR:-http://deb.debian.org/debian}
if [ "$(id -u)" -ne 0 ]; then
	echo "deb-root: must run as root (it chroots)" >&2
	exit 1
fi
# A mount namespace of its own: the root's /proc goes away with it.
if [ -z "${ATOMSYNC_DEB_NS:-}" ]; then
	ATOMSYNC_DEB_NS=1 exec unshare --mount --propagation private "$0" "$@"
fi

fail() {
	echo "deb-root: $*" >&2
	exit 1
}

if [ ! -e "$root/.atomsync-deb-root" ]; then
	echo "deb-root: debootstrap bookworm into $root"
	rm -rf "$root"
	mkdir -p "$root"
	debootstrap --variant=minbase bookworm "$root" "$mirror" \
		>"$root.log" 2>&1 || { tail -n 20 "$root.log" >&2; fail "debootstrap failed"; }
	touch "$root/.atomsync-deb-root"
fi
mount -t proc proc "$root/proc"
cp /etc/resolv.conf "$root/etc/resolv.conf"
rm -rf "$root/var/tmp/atomsync-debs"
mkdir -p "$root/var/tmp/atomsync-debs"
cp "$deb1" "$deb2" "$libdeb" "$devdeb" "$root/var/tmp/atomsync-debs/"
d1=/var/tmp/atomsync-debs/$(basename "$deb1")
d2=/var/tmp/atomsync-debs/$(basename "$deb2")
dlib=/var/tmp/atomsync-debs/$(basename "$libdeb")
ddev=/var/tmp/atomsync-debs/$(basename "$devdeb")
v2=$(dpkg-deb -f "$deb2" Version)

inroot() {
	chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
		DEBIAN_FRONTEND=noninteractive sh -ec "$1"
}
log=$root/var/tmp/atomsync-debs/log
# run STEP COMMAND: COMMAND in the root, its output shown only on failure.
run() {
	inroot "$2" >"$log" 2>&1 || { cat "$log" >&2; fail "$1 failed"; }
}
# An edited conffile is kept without asking.
apt_install() {
	run "$1" "apt-get install -y -q -o Dpkg::Options::=--force-confold $2"
}

wants=$root/etc/systemd/system/multi-user.target.wants/atomsyncd.service
conf=$root/etc/atomsync/atomsync.conf
not_enabled() {
	if [ -e "$wants" ] || [ -L "$wants" ]; then
		fail "$1: atomsyncd.service is enabled"
	fi
}
target_intact() {
	if [ "$(readlink "$root/srv/target/..data")" != "$gen" ] ||
		[ "$(cat "$root/srv/target/app.conf")" != v1 ]; then
		fail "$1: the published target changed"
	fi
}
# query FIELD: that field of atomsync in the root's dpkg database.
query() {
	dpkg-query --admindir="$root/var/lib/dpkg" -W -f="\${$1}\n" atomsync
}
mapping() {
	printf '[sync:web]\nsource = /srv/source\ntarget = /srv/target\n'
}

# Whatever an earlier run left.
run "cleanup" "dpkg --purge atomsync libatomsync-dev libatomsync0;
	rm -rf /etc/atomsync /srv/source /srv/target /srv/rendered"
run "apt-get update" "apt-get update -q"

echo "deb-root: install $(basename "$deb1")"
apt_install install "$d1"
[ -x "$root/usr/sbin/atomsyncd" ] || fail "install: no /usr/sbin/atomsyncd"
for u in atomsyncd.service atomsyncd@.service; do
	[ -f "$root/lib/systemd/system/$u" ] || fail "install: no $u"
done
query Conffiles | grep -q '^ /etc/atomsync/atomsync.conf ' ||
	fail "install: /etc/atomsync/atomsync.conf is not a conffile"
not_enabled "install with the shipped config, which maps nothing"

# The administrator adds a mapping, and it publishes.
mapping >>"$conf"
mkdir -p "$root/srv/source"
echo v1 >"$root/srv/source/app.conf"
run "publish" "atomsyncd --once --config /etc/atomsync/atomsync.conf"
gen=$(readlink "$root/srv/target/..data") || fail "publish: no ..data"

echo "deb-root: upgrade to $(basename "$deb2")"
apt_install upgrade "$d2"
[ "$(query Version)" = "$v2" ] ||
	fail "upgrade: $v2 not installed"
grep -q '^\[sync:web\]$' "$conf" || fail "upgrade: the edited config was replaced"
grep -q '^# revision ' "$conf.dpkg-dist" ||
	fail "upgrade: the new config is not beside the edited one"
not_enabled "upgrade (the administrator enables it)"
target_intact upgrade

echo "deb-root: remove"
run remove "apt-get remove -y -q atomsync"
[ ! -e "$root/usr/sbin/atomsyncd" ] || fail "remove: atomsyncd is still there"
grep -q '^\[sync:web\]$' "$conf" || fail "remove: the config is gone"
target_intact remove

echo "deb-root: purge"
run purge "dpkg --purge atomsync"
[ ! -e "$root/etc/atomsync" ] || fail "purge left $(ls -A "$root/etc/atomsync")"
target_intact purge

echo "deb-root: install over a config that maps something"
mkdir -p "$root/etc/atomsync"
mapping >"$conf"
apt_install "install over a config" "$d2"
grep -q '^\[sync:web\]$' "$conf" || fail "install over a config: it was replaced"
[ "$(readlink "$wants")" = /lib/systemd/system/atomsyncd.service ] ||
	fail "install over a config that maps something: atomsyncd.service not enabled"
echo "deb-root: remove, disable, install again"
run "remove again" "apt-get remove -y -q atomsync"
rm "$wants" # systemctl disable, which needs systemd running
apt_install "install after a removal" "$d2"
not_enabled "install after a removal, disabled meanwhile"
run "second purge" "dpkg --purge atomsync"
not_enabled "purge"
[ ! -e "$root/etc/atomsync" ] || fail "second purge left $(ls -A "$root/etc/atomsync")"
target_intact "second purge"

echo "deb-root: install $(basename "$devdeb") and build against it"
# A compiler and pkg-config, as a developer has them; they stay in the
# reused root.
run "install a compiler" "apt-get install -y -q gcc libc6-dev pkgconf"
apt_install "install libatomsync-dev" "$dlib $ddev"
libdir=/usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH)
ex=/usr/share/doc/libatomsync-dev/examples/render.c
w=/var/tmp/atomsync-debs
run "cc with pkg-config" "cc -o $w/render $ex \$(pkg-config --cflags --libs atomsync)"
run "cc with libatomsync.a" "cc -o $w/render-static $ex \$(pkg-config --cflags atomsync) $libdir/libatomsync.a"
# /lib is /usr/lib in a merged-/usr root, and ldd may name either.
inroot "ldd $w/render" | grep -q "lib${libdir#/usr/lib}/libatomsync.so.0 " ||
	fail "render does not load $libdir/libatomsync.so.0"
if inroot "ldd $w/render-static" | grep -q libatomsync; then
	fail "render-static loads libatomsync.so"
fi
for r in render render-static; do
	run "$r" "mkdir -p /srv/rendered; $w/$r /srv/rendered/$r listen=8080 workers=4"
	[ "$(cat "$root/srv/rendered/$r/keys/workers")" = 4 ] &&
		[ "$(readlink "$root/srv/rendered/$r/app.conf")" = ..data/app.conf ] ||
		fail "$r did not publish"
done

echo "deb-root: purge the library"
files=$(dpkg-query --admindir="$root/var/lib/dpkg" -L libatomsync0 libatomsync-dev |
	grep -E '^/usr/(lib|include)/.*atomsync')
[ -n "$files" ] || fail "no library files listed"
run "purge the library" "apt-get purge -y -q libatomsync0"
for p in libatomsync0 libatomsync-dev; do
	if dpkg-query --admindir="$root/var/lib/dpkg" -W -f='${Status}' "$p" 2>/dev/null |
		grep -q 'ok installed'; then
		fail "purge: $p is still installed"
	fi
done
for f in $files; do
	[ ! -e "$root$f" ] && [ ! -L "$root$f" ] || fail "purge left $f"
done
run "run after the purge" "! $w/render /srv/rendered/render listen=1"
echo "deb-root: install, upgrade, remove and purge behave"
