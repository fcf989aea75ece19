#!/bin/sh
# Installs the Debian packages listed in tools/system-packages.txt that are missing.
set -eu
list="$(dirname "$0")/system-packages.txt"
missing=""
for pkg in $(grep -v '^#' "$list"); do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
done
[ -z "$missing" ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup: apt-get is not available; tests needing$missing will report themselves skipped" >&2
    exit 0
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "setup: installing$missing" >&2
# Another apt-get (a second checkout setting up) holds the dpkg lock for a while: wait for it.
$SUDO apt-get -o DPkg::Lock::Timeout=900 update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends $missing >/dev/null
