#!/usr/bin/env bash
# Unpacks mail programs that cannot be installed beside Postfix (they conflict with it as
# Debian packages, each providing mail-transport-agent, or pull one in; Cyrus conflicts with
# dovecot-imapd, both providing imap-server) into a private folder for the interop tests:
# `apt-get download` then `dpkg-deb -x`, nothing installed system-wide, no package script run.
# Each system gets
#   $CACHE/<system>/root/     the unpacked packages (set-id bits removed)
#   $CACHE/<system>/bin/<prog> a wrapper that runs the program with the unpacked libraries
# where CACHE is $POSTERN_INTEROP_CACHE, else /var/cache/postern-interop for root (so that the
# tests' unprivileged users can reach it; /root cannot be entered), else ~/.cache/postern-interop
# (test/helpers/unpacked.ts uses the same rule). The tests look there and
# skip, saying why, when a wrapper is missing. Idempotent: an unpacked system is left alone.
#
#   scripts/unpack-mta.sh [maildrop] [exim] [sendmail] [opensmtpd] [cyrus] [courier]     (default: all)
set -euo pipefail

if [ "$(id -u)" -eq 0 ]; then DEFAULT_CACHE=/var/cache/postern-interop; else DEFAULT_CACHE="$HOME/.cache/postern-interop"; fi
CACHE="${POSTERN_INTEROP_CACHE:-$DEFAULT_CACHE}"
ARCH_LIBS="lib/x86_64-linux-gnu usr/lib/x86_64-linux-gnu usr/lib"

# system → packages; the program(s) to wrap
declare -A PACKAGES=(
  [maildrop]="maildrop courier-authlib libcourier-unicode4 libpcre3"
  [exim]="exim4-daemon-light exim4-base exim4-config libidn12"
  [cyrus]="cyrus-imapd cyrus-common sasl2-bin libical3 libxapian30 libzephyr4 libpcre3 libclamav12 libmspack0"
  [courier]="courier-mta courier-base courier-imap courier-authlib courier-authdaemon courier-authlib-userdb libcourier-unicode4 libidn12 libpcre3 libgamin0 libltdl7"
  # m4 builds the test's sendmail.cf from the sendmail-cf macros; the libraries are those a
  # fresh machine with Postfix may lack.
  [sendmail]="sendmail-bin sendmail-base sendmail-cf m4 liblockfile1 libwrap0 libldap-2.5-0"
  [opensmtpd]="opensmtpd libevent-2.1-7"
)
declare -A PROGRAMS=(
  [maildrop]="usr/bin/maildrop"
  [exim]="usr/sbin/exim4"
  [cyrus]="usr/lib/cyrus/bin/master usr/sbin/saslpasswd2"
  [courier]=""
  [sendmail]="usr/libexec/sendmail/sendmail usr/bin/m4"
  [opensmtpd]="usr/sbin/smtpd"
)

download() {
  # A fresh machine may have no package lists yet.
  apt-get download "$@" >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get download "$@" >/dev/null; }
}

courier_layout() {
  # Courier's paths (/etc/courier, /var/lib/courier, /run/courier, /usr/lib/courier, the
  # authdaemon socket) are compiled in, many as immediate operands, so they cannot be patched
  # in the binaries as Exim's user name is. bin/courier-ns runs a command in a private mount
  # and PID namespace instead (see its header). Killing that namespace's first process ends
  # every process in it.
  local dir="$1"
  local r="$dir/root"
  # Debian 12 merges /lib into /usr/lib: the unpacked /lib belongs in the /usr layer.
  if [ -d "$r/lib" ]; then cp -a "$r/lib/." "$r/usr/lib/" && rm -rf "$r/lib"; fi
  # The names update-alternatives would make (package scripts are not run).
  local p
  for p in makedat maildirmake deliverquota lockmail preline; do
    if [ -e "$r/usr/bin/$p.courier" ]; then ln -sf "$p.courier" "$r/usr/bin/$p"; fi
  done
  mkdir -p "$r/run/courier" "$r/var/lib/courier"
  cat >"$dir/bin/courier-ns" <<'EOF'
#!/bin/sh
# courier-ns DIR CMD [ARG...] (written by scripts/unpack-mta.sh): runs CMD as root in a private
# mount and PID namespace where the unpacked Courier sits at Debian's paths: the unpacked /usr,
# /etc, /var/lib and /run laid read-only over the system's (overlayfs), DIR/etc, DIR/spool and
# DIR/run bound on /etc/courier, /var/lib/courier and /run/courier, a "courier" account (the
# uid and gid of daemon) in that namespace only, and a writable /dev layer in DIR/.dev for the
# /dev/log socket. Nothing outside the namespace changes; killing its first process (the
# child of this unshare) or this unshare ends every process in it.
[ $# -ge 2 ] || { echo "usage: courier-ns DIR CMD [ARG...]" >&2; exit 64; }
root="$(cd "$(dirname "$0")/../root" && pwd)"
exec unshare --mount --pid --fork --kill-child --mount-proc --propagation private /bin/sh -ec '
root=$1; dir=$2; shift 2
for d in usr etc var/lib run; do mount -t overlay postern-courier -o "lowerdir=$root/$d:/$d" "/$d"; done
mount --bind "$dir/etc" /etc/courier
mount --bind "$dir/spool" /var/lib/courier
mount --bind "$dir/run" /run/courier
mkdir -p "$dir/.dev/upper" "$dir/.dev/work"
mount -t overlay postern-courier-dev -o "lowerdir=/dev,upperdir=$dir/.dev/upper,workdir=$dir/.dev/work" /dev
if ! getent passwd courier >/dev/null; then
  { cat /etc/passwd; echo "courier:x:1:1:Courier (postern tests):/var/lib/courier:/usr/sbin/nologin"; } >"$dir/.passwd"
  { cat /etc/group; echo "courier:x:1:"; } >"$dir/.group"
  mount --bind "$dir/.passwd" /etc/passwd
  mount --bind "$dir/.group" /etc/group
fi
exec "$@"' courier-ns "$root" "$@"
EOF
  chmod 755 "$dir/bin/courier-ns"
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
  [ "$system" != courier ] || courier_layout "$dir"
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
[ "${#systems[@]}" -gt 0 ] || systems=(maildrop exim sendmail opensmtpd cyrus courier)
for s in "${systems[@]}"; do
  [ -n "${PACKAGES[$s]:-}" ] || { echo "unpack-mta: unknown system $s (known: ${!PACKAGES[*]})" >&2; exit 64; }
  unpack "$s"
done
