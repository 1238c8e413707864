#!/usr/bin/env bash
# Installs the tools and man pages. PREFIX (default /usr/local) and DESTDIR
# as usual; mount.composefs goes to /sbin (SBINDIR), where mount(8) looks
# for helpers, so `mount -t composefs` works.
#   scripts/install.sh                       # build, install under /usr/local, helper in /sbin
#   DESTDIR=/tmp/pkg PREFIX=/usr scripts/install.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=${PREFIX:-/usr/local}
DESTDIR=${DESTDIR:-}
BINDIR=${BINDIR:-$PREFIX/bin}
SBINDIR=${SBINDIR:-/sbin}
MANDIR=${MANDIR:-$PREFIX/share/man}
[ -x .build/release/mkcomposefs ] && [ -x .build/release/mount.composefs ] || scripts/build
install -d "$DESTDIR$BINDIR" "$DESTDIR$SBINDIR" "$DESTDIR$MANDIR/man1" "$DESTDIR$MANDIR/man5" "$DESTDIR$MANDIR/man8"
install -m 0755 .build/release/mkcomposefs .build/release/composefs-info "$DESTDIR$BINDIR/"
install -m 0755 .build/release/mount.composefs "$DESTDIR$SBINDIR/"
install -m 0644 man/mkcomposefs.1 man/composefs-info.1 "$DESTDIR$MANDIR/man1/"
install -m 0644 man/composefs-dump.5 "$DESTDIR$MANDIR/man5/"
install -m 0644 man/mount.composefs.8 "$DESTDIR$MANDIR/man8/"
echo "installed into ${DESTDIR:-/}: $BINDIR/{mkcomposefs,composefs-info} $SBINDIR/mount.composefs $MANDIR" >&2
