#!/usr/bin/env bash
# Install the system packages ShareUplift's demo and tests need (fuse3, rsync, curl, attr for
# getfattr, openssl for the TLS test CA, samba's smbd and smbclient for the Office-save test
# through a Samba share of the mount), if missing.
# Safe to run repeatedly; needs root (or sudo) only when something is missing.
set -euo pipefail
missing=()
command -v fusermount3 >/dev/null 2>&1 || missing+=(fuse3)
command -v rsync >/dev/null 2>&1 || missing+=(rsync)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v getfattr >/dev/null 2>&1 || missing+=(attr)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# smbd lives in /usr/sbin, which a non-root PATH may lack.
command -v smbd >/dev/null 2>&1 || [ -x /usr/sbin/smbd ] || missing+=(samba)
command -v smbclient >/dev/null 2>&1 || missing+=(smbclient)
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing: ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ ! -e /dev/fuse ]; then
  echo "error: /dev/fuse is missing; load the fuse module (modprobe fuse)" >&2
  exit 1
fi
