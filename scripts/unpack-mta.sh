#!/usr/bin/env bash
# Unpacks mail programs that cannot be installed beside Postfix (they conflict with it as
# Debian packages, each providing mail-transport-agent, or pull one in) into a private folder
# for the interop tests: `apt-get download` then `dpkg-deb -x`, nothing installed system-wide,
# no package script run. Each system gets
#   $CACHE/<system>/root/     the unpacked packages (set-id bits removed)
#   $CACHE/<system>/bin/<prog> a wrapper that runs the program with the unpacked libraries
# where CACHE is $POSTERN_INTEROP_CACHE, else /var/cache/postern-interop for root (so that the
# tests' unprivileged users can reach it; /root cannot be entered), else ~/.cache/postern-interop
# (test/helpers/unpacked.ts uses the same rule). The tests look there and
# skip, saying why, when a wrapper is missing. Idempotent: an unpacked system is left alone.
#
#   scripts/unpack-mta.sh [maildrop] [exim] [sendmail] [opensmtpd]     (default: all)
set -euo pipefail

if [ "$(id -u)" -eq 0 ]; then DEFAULT_CACHE=/var/cache/postern-interop; else DEFAULT_CACHE="$HOME/.cache/postern-interop"; fi
CACHE="${POSTERN_INTEROP_CACHE:-$DEFAULT_CACHE}"
ARCH_LIBS="lib/x86_64-linux-gnu usr/lib/x86_64-linux-gnu usr/lib"

# system → packages; the program(s) to wrap
declare -A PACKAGES=(
  [maildrop]="maildrop courier-authlib libcourier-unicode4 libpcre3"
  [exim]="exim4-daemon-light exim4-base exim4-config libidn12"
  # m4 builds the test's sendmail.cf from the sendmail-cf macros; the libraries are those a
  # fresh machine with Postfix may lack.
  [sendmail]="sendmail-bin sendmail-base sendmail-cf m4 liblockfile1 libwrap0 libldap-2.5-0"
  [opensmtpd]="opensmtpd libevent-2.1-7"
)
declare -A PROGRAMS=(
  [maildrop]="usr/bin/maildrop"
  [exim]="usr/sbin/exim4"
  [sendmail]="usr/libexec/sendmail/sendmail usr/bin/m4"
  [opensmtpd]="usr/sbin/smtpd"
)

download() {
  # A fresh machine may have no package lists yet.
  apt-get download "$@" >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get download "$@" >/dev/null; }
}

unpack() {
  local system="$1"
  local dir="$CACHE/$system"
  local prog
  if [ -f "$dir/.done" ]; then
    echo "unpack-mta: $system already in $dir"
    return 0
  fi
  if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-deb >/dev/null 2>&1; then
    echo "unpack-mta: no apt-get/dpkg-deb here; $system not unpacked (its tests will skip)" >&2
    return 0
  fi
  rm -rf "$dir"
  mkdir -p "$dir/debs" "$dir/root" "$dir/bin"
  # apt's sandbox user must be able to write the download folder.
  chmod 777 "$dir/debs"
  # shellcheck disable=SC2086
  if ! (cd "$dir/debs" && download ${PACKAGES[$system]}); then
    echo "unpack-mta: could not download ${PACKAGES[$system]}; $system not unpacked (its tests will skip)" >&2
    rm -rf "$dir"
    return 0
  fi
  for deb in "$dir"/debs/*.deb; do dpkg-deb -x "$deb" "$dir/root"; done
  # Set-id bits would make the loader ignore LD_LIBRARY_PATH (and are not wanted in a test).
  find "$dir/root" -type f -perm /6000 -exec chmod u-s,g-s {} +
  if [ "$system" = exim ]; then
    # Debian builds Exim with its user "Debian-exim" compiled in and looked up before any
    # configuration is read; without the package's postinst that account does not exist.
    # Patch the name in this private copy to "daemon" (a Debian base account with a group of
    # the same name; same length with NUL padding), so no account is added to the system.
    perl -pi -e 's/Debian-exim\0/daemon\0\0\0\0\0\0/' "$dir/root/usr/sbin/exim4"
    grep -q "Debian-exim" "$dir/root/usr/sbin/exim4" && { echo "unpack-mta: could not patch exim's user name" >&2; exit 1; }
  fi
  if [ "$system" = opensmtpd ]; then
    # OpenSMTPD looks up its two users, "opensmtpd" and "opensmtpq" on Debian, before reading
    # any configuration (the package's postinst adds them). The names sit at the end of the
    # "unknown user …" messages, which getpwnam is passed the tail of; patch them to the base
    # accounts "daemon" and "mail" (same length with NUL padding) in this private copy.
    local smtpd="$dir/root/usr/sbin/smtpd" size
    size=$(stat -c %s "$smtpd")
    perl -pi -e 's/unknown user opensmtpd\0/unknown user daemon\0\0\0\0/; s/unknown user opensmtpq\0/unknown user mail\0\0\0\0\0\0/' "$smtpd"
    if grep -qaE "unknown user opensmtp[dq]" "$smtpd" || [ "$(stat -c %s "$smtpd")" != "$size" ]; then
      echo "unpack-mta: could not patch opensmtpd's user names" >&2
      exit 1
    fi
  fi
  local libs=""
  for l in $ARCH_LIBS; do libs="$libs${libs:+:}$dir/root/$l"; done
  for prog in ${PROGRAMS[$system]}; do
    cat >"$dir/bin/$(basename "$prog")" <<EOF
#!/bin/sh
# Runs the unpacked $(basename "$prog") with its unpacked libraries (scripts/unpack-mta.sh).
LD_LIBRARY_PATH="$libs" exec "$dir/root/$prog" "\$@"
EOF
    chmod 755 "$dir/bin/$(basename "$prog")"
  done
  # Readable by the users the tests run programs as (nobody), as installed packages are.
  chmod -R go+rX "$dir"
  chmod go+rx "$CACHE"
  # The package versions, for the interoperability table (docs/interop.md).
  for deb in "$dir"/debs/*.deb; do echo "$(dpkg-deb -f "$deb" Package) $(dpkg-deb -f "$deb" Version)"; done >"$dir/versions"
  rm -rf "$dir/debs"
  touch "$dir/.done"
  echo "unpack-mta: $system unpacked into $dir"
}

systems=("$@")
[ "${#systems[@]}" -gt 0 ] || systems=(maildrop exim sendmail opensmtpd)
for s in "${systems[@]}"; do
  [ -n "${PACKAGES[$s]:-}" ] || { echo "unpack-mta: unknown system $s (known: ${!PACKAGES[*]})" >&2; exit 64; }
  unpack "$s"
done
