#!/usr/bin/env bash
# Installs the tools and man pages. PREFIX (default /usr/local) and DESTDIR
# as usual. One stripped program, BINDIR/composefs; mkcomposefs and
# composefs-info, composefs-store, composefs-dump and composefs-fuse are links to it beside it, and mount.composefs a link in
# /sbin (SBINDIR), where mount(8) looks for helpers, so `mount -t composefs`
# works.
#   scripts/install.sh                       # build, install under /usr/local, helper in /sbin
#   DESTDIR=/tmp/pkg PREFIX=/usr scripts/install.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=${PREFIX:-/usr/local}
DESTDIR=${DESTDIR:-}
BINDIR=${BINDIR:-$PREFIX/bin}
SBINDIR=${SBINDIR:-/sbin}
MANDIR=${MANDIR:-$PREFIX/share/man}
[ -x .build/release/composefs ] && [ -L .build/release/mount.composefs ] || scripts/build
install -d "$DESTDIR$BINDIR" "$DESTDIR$SBINDIR" "$DESTDIR$MANDIR/man1" "$DESTDIR$MANDIR/man5" "$DESTDIR$MANDIR/man8"
install -s -m 0755 .build/release/composefs "$DESTDIR$BINDIR/composefs"
ln -sfn composefs "$DESTDIR$BINDIR/mkcomposefs"
ln -sfn composefs "$DESTDIR$BINDIR/composefs-info"
ln -sfn composefs "$DESTDIR$BINDIR/composefs-store"
ln -sfn composefs "$DESTDIR$BINDIR/composefs-dump"
ln -sfn composefs "$DESTDIR$BINDIR/composefs-fuse"
ln -sfn "$BINDIR/composefs" "$DESTDIR$SBINDIR/mount.composefs"
install -m 0644 man/mkcomposefs.1 man/composefs-info.1 man/composefs-store.1 man/composefs-dump.1 man/composefs-fuse.1 "$DESTDIR$MANDIR/man1/"
install -m 0644 man/composefs-dump.5 "$DESTDIR$MANDIR/man5/"
install -m 0644 man/mount.composefs.8 "$DESTDIR$MANDIR/man8/"
echo "installed into ${DESTDIR:-/}: $BINDIR/{composefs,mkcomposefs,composefs-info,composefs-store,composefs-dump,composefs-fuse} $SBINDIR/mount.composefs $MANDIR" >&2
