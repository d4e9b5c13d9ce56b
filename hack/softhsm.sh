#!/usr/bin/env bash
# Makes sure SoftHSM2 (Debian's softhsm2: the PKCS#11 module and
# softhsm2-util) is installed, for make test-pkcs11. Exits 0 when it is
# (installing it with apt-get when it can), 3 with a message saying why
# when this machine cannot install packages at all (no apt-get, no root),
# and 1 when apt-get fails (a lock, the network): that is an error to see,
# not a reason to skip the tests.
set -euo pipefail
module=/usr/lib/softhsm/libsofthsm2.so
if [[ -e $module ]] && command -v softhsm2-util >/dev/null; then
	exit 0
fi
if ! command -v apt-get >/dev/null; then
	echo "SoftHSM2 is not installed and this machine has no apt-get: install softhsm2 to run the pkcs11 tests" >&2
	exit 3
fi
sudo=""
if [[ $(id -u) != 0 ]]; then
	if ! command -v sudo >/dev/null; then
		echo "SoftHSM2 is not installed and installing it needs root: run apt-get install softhsm2" >&2
		exit 3
	fi
	sudo=sudo
fi
echo "installing softhsm2 (apt-get)" >&2
if ! $sudo apt-get install -y -q softhsm2 >/dev/null 2>&1; then
	$sudo apt-get update -q >/dev/null 2>&1 || true
	if ! $sudo apt-get install -y -q softhsm2 >/dev/null; then
		echo "apt-get could not install softhsm2 (see above): the pkcs11 tests need it" >&2
		exit 1
	fi
fi
