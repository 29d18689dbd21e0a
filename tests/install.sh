#!/bin/sh
# make install DESTDIR=... puts every file where it belongs, and a second
# install keeps a config the administrator edited.
# Usage: tests/install.sh BUILDDIR
set -eu
build=${1:?usage: tests/install.sh BUILDDIR}
dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT
make -s -C "$build" install DESTDIR="$dest" >/dev/null
vars=$(make -s -C "$build" -f Makefile -f - print-dirs <<'MK'
print-dirs:
	@echo "$(sbindir)|$(sysconfdir)|$(mandir)|$(systemdsystemunitdir)"
MK
)
sbindir=${vars%%|*}; rest=${vars#*|}
sysconfdir=${rest%%|*}; rest=${rest#*|}
mandir=${rest%%|*}; unitdir=${rest#*|}
fail=0
for f in "$sbindir/atomsyncd" "$sysconfdir/atomsync/atomsync.conf" \
	"$mandir/man8/atomsyncd.8" "$mandir/man5/atomsync.conf.5" \
	"$unitdir/atomsyncd.service" "$unitdir/atomsyncd@.service"; do
	if [ ! -e "$dest$f" ]; then
		echo "install: missing $f" >&2
		fail=1
	fi
done
[ -x "$dest$sbindir/atomsyncd" ] || { echo "install: atomsyncd not executable" >&2; fail=1; }
grep -q "^ExecStart=$sbindir/atomsyncd --config $sysconfdir/atomsync/atomsync.conf$" \
	"$dest$unitdir/atomsyncd.service" || { echo "install: unit names wrong paths" >&2; fail=1; }
grep -q "$sysconfdir/atomsync/atomsync.conf" "$dest$mandir/man8/atomsyncd.8" ||
	{ echo "install: man page names the wrong config path" >&2; fail=1; }
# The example maps nothing until it is edited, so a daemon started on it
# refuses instead of publishing the example; uncommented, it is valid.
conf="$dest$sysconfdir/atomsync/atomsync.conf"
if out=$("$dest$sbindir/atomsyncd" --check-config --config "$conf" 2>&1) ||
	! echo "$out" | grep -q 'no \[sync:NAME\] section'; then
	echo "install: the example config maps something: $out" >&2
	fail=1
fi
sed -e 's/^#\(\[sync:example\]\)$/\1/' -e 's/^#\(source = \)/\1/' \
	-e 's/^#\(target = \)/\1/' "$conf" >"$dest/edited.conf"
out=$("$dest$sbindir/atomsyncd" --check-config --config "$dest/edited.conf" 2>&1) ||
	{ echo "install: the example mapping, uncommented: $out" >&2; fail=1; }
# An edited config survives a reinstall.
echo "# edited by the administrator" >>"$dest$sysconfdir/atomsync/atomsync.conf"
make -s -C "$build" install DESTDIR="$dest" >/dev/null
grep -q "edited by the administrator" "$dest$sysconfdir/atomsync/atomsync.conf" ||
	{ echo "install: reinstall overwrote the config" >&2; fail=1; }
[ $fail -eq 0 ] && echo "install: every file in place"
exit $fail
