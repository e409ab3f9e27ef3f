#!/usr/bin/env bash
# Build a .deb of ShareUplift by hand with dpkg-deb (no cargo-deb needed): the binary, the
# systemd unit, man pages and shell completions, all generated from this checkout. Then,
# unless CHECK=0, install it with dpkg -i, run /usr/bin/shareuplift --version, check every
# file is where the package says, and remove it with dpkg -r (checking the files are gone).
#   scripts/package-deb.sh               # release build (a clean one takes ~8 min on 2 cores)
#   PROFILE=dev scripts/package-deb.sh   # reuse the debug build (quick, for testing the script)
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE=${PROFILE:-release}
if [ "$PROFILE" = release ]; then
  cargo build --release --locked
  BIN=target/release/shareuplift
else
  cargo build --locked
  BIN=target/debug/shareuplift
fi
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
ARCH=$(dpkg --print-architecture)
NAME="shareuplift_${VERSION}_${ARCH}"
STAGE="target/deb/$NAME"
rm -rf "$STAGE"
install -d "$STAGE/DEBIAN" "$STAGE/usr/bin" "$STAGE/lib/systemd/system" \
  "$STAGE/usr/share/man/man1" "$STAGE/usr/share/bash-completion/completions" \
  "$STAGE/usr/share/zsh/vendor-completions" "$STAGE/usr/share/fish/vendor_completions.d" \
  "$STAGE/usr/share/doc/shareuplift"
install -m 0755 "$BIN" "$STAGE/usr/bin/shareuplift"
install -m 0644 dist/shareuplift@.service "$STAGE/lib/systemd/system/shareuplift@.service"
"$BIN" man --dir "$STAGE/usr/share/man/man1"
gzip -9n "$STAGE"/usr/share/man/man1/*.1
"$BIN" completions bash > "$STAGE/usr/share/bash-completion/completions/shareuplift"
"$BIN" completions zsh > "$STAGE/usr/share/zsh/vendor-completions/_shareuplift"
"$BIN" completions fish > "$STAGE/usr/share/fish/vendor_completions.d/shareuplift.fish"
install -m 0644 README.md "$STAGE/usr/share/doc/shareuplift/README.md"
install -d "$STAGE/usr/share/doc/shareuplift/doc"
install -m 0644 doc/*.md "$STAGE/usr/share/doc/shareuplift/doc/"
SIZE=$(du -sk "$STAGE" | cut -f1)
cat > "$STAGE/DEBIAN/control" <<CONTROL
Package: shareuplift
Version: $VERSION
Architecture: $ARCH
Maintainer: ShareUplift maintainers <shareuplift@localhost>
Depends: fuse3
Section: utils
Priority: optional
Installed-Size: $SIZE
Description: copy files to SharePoint as to a disk
 A FUSE filesystem that uploads files written to it to SharePoint Online or
 OneDrive for Business through Microsoft Graph upload sessions, resumed after
 failures and hash-verified. Ships a systemd unit (shareuplift@.service) and
 works from /etc/fstab (fuse.shareuplift).
CONTROL
DEB="target/deb/$NAME.deb"
dpkg-deb --root-owner-group --build "$STAGE" "$DEB" >/dev/null
echo "built $DEB ($(du -h "$DEB" | cut -f1))"
dpkg-deb --contents "$DEB" | awk '{print $6}' | grep -v '/$'

[ "${CHECK:-1}" = 1 ] || exit 0
FILES=(/usr/bin/shareuplift /lib/systemd/system/shareuplift@.service
  /usr/share/man/man1/shareuplift.1.gz /usr/share/man/man1/shareuplift-mount.1.gz
  /usr/share/bash-completion/completions/shareuplift
  /usr/share/zsh/vendor-completions/_shareuplift
  /usr/share/fish/vendor_completions.d/shareuplift.fish)
dpkg -i "$DEB" >/dev/null
echo "installed: $(/usr/bin/shareuplift --version)"
for f in "${FILES[@]}"; do
  [ -e "$f" ] || { echo "missing after dpkg -i: $f" >&2; exit 1; }
done
dpkg -L shareuplift | grep -q '^/usr/bin/shareuplift$'
dpkg -r shareuplift >/dev/null
for f in "${FILES[@]}"; do
  [ ! -e "$f" ] || { echo "still present after dpkg -r: $f" >&2; exit 1; }
done
echo "dpkg -i, --version, file check and dpkg -r: ok"
