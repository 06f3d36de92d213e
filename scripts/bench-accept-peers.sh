#!/usr/bin/env bash
# Install what `npm run bench:accept` compares postern with, on a Debian machine (as root):
#   postfix  smtp-source (the client), smtp-sink, and the binaries of the private Postfix
#            instance the bench starts under a temp folder (bench/peers/postfix/README.md).
#            Installed with debconf "No configuration": the system instance stays unconfigured
#            and is never started, by this script or by the bench.
#   strace   counts the fsync/fdatasync/msync calls of each target (one untimed pass).
# Idempotent: installs only what is missing. The bench runs without either (loadgen + sink).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
need=()
for pkg in postfix strace; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ "${#need[@]}" -eq 0 ]; then
  echo "bench peers: postfix and strace already installed"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "bench peers: need root to apt-get install ${need[*]}" >&2
  exit 1
fi
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}"
echo "bench peers: installed ${need[*]}"
