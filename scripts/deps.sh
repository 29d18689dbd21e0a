# Sourced by scripts/demo and scripts/test: installs the Debian packages a
# step needs when any of them is missing, and bootstraps the build system.
# shellcheck shell=bash

# Packages to build atomsyncd.
# shellcheck disable=SC2034
DEPS_BUILD="gcc make autoconf automake libtool pkg-config libuv1-dev libinih-dev
check libsystemd-dev libmicrohttpd-dev"
# And to run every test: memory checking, man page lint, dropping
# privileges (setpriv), unit file checks (systemd-analyze), scraping
# metrics (curl), libFuzzer (clang and its runtime), and the library's
# Python example (python3).
# shellcheck disable=SC2034
DEPS_TEST="valgrind mandoc util-linux systemd curl clang libclang-rt-14-dev python3"
# And to build the Debian package and check it (CI installs them; without
# dpkg-buildpackage, scripts/test says it skips that step).
# shellcheck disable=SC2034
DEPS_DEB="dpkg-dev debhelper lintian"

deps_missing() {
	local p missing=""
	for p in "$@"; do
		if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
			grep -q "install ok installed"; then
			missing="$missing $p"
		fi
	done
	echo "$missing"
}

# deps_install PACKAGE...: apt-get installs the ones that are missing.
deps_install() {
	local missing sudo=""
	# shellcheck disable=SC2086,SC2048
	missing=$(deps_missing $*)
	[ -n "$missing" ] || return 0
	if [ "$(id -u)" -ne 0 ]; then
		if command -v sudo >/dev/null 2>&1; then
			sudo="sudo"
		else
			echo "atomsync: missing packages:$missing" >&2
			echo "atomsync: as root, run: apt-get update && apt-get install -y$missing" >&2
			exit 1
		fi
	fi
	echo "atomsync: installing:$missing" >&2
	$sudo apt-get update
	# shellcheck disable=SC2086
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends $missing
}

# deps_bootstrap: generates ./configure when it is missing or stale.
deps_bootstrap() {
	if [ ! -x configure ] || [ configure.ac -nt configure ] ||
		[ Makefile.am -nt Makefile.in ]; then
		autoreconf -fi
	fi
	# An in-tree configure would break the out-of-tree builds below.
	if [ -f config.status ]; then
		make distclean >/dev/null 2>&1 || true
	fi
}

# deps_build DIR [CONFIGURE-ARGS...]: configures (once) and builds in DIR.
deps_build() {
	local dir=$1 srcdir=$PWD
	shift
	mkdir -p "$dir"
	if [ ! -f "$dir/config.status" ]; then
		(cd "$dir" && "$srcdir/configure" "$@")
	fi
	make -C "$dir" -j"$(nproc)"
}
