#!/usr/bin/env bash
# Installs, idempotently, what `npm run bench -- --compare ...` needs on a Debian machine:
#   - postfix (Postfix itself for the private peer instances in bench/peers/, and its
#     smtp-source / smtp-sink tools) and swaks, from apt. Postfix is preseeded to
#     "No configuration" and the system service is neither started nor enabled: the bench runs
#     its own throw-away instances on loopback ports and never touches /etc/postfix's;
#   - Haraka and smtp-server from npm into bench/.peers/ (the bench's own folder, gitignored),
#     not into the project's dependencies.
# Run as root (or with sudo available). Safe to run again: installed pieces are skipped.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PEERS_DIR="$ROOT/bench/.peers"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else echo "install-peers: run as root (apt-get)" >&2; exit 1; fi
fi

need_apt=()
[ -x /usr/sbin/postfix ] && [ -x /usr/sbin/smtp-source ] && [ -x /usr/sbin/smtp-sink ] || need_apt+=(postfix)
command -v swaks >/dev/null 2>&1 || need_apt+=(swaks)

if [ "${#need_apt[@]}" -gt 0 ]; then
  echo "install-peers: apt-get install ${need_apt[*]}"
  echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
  # Keep the package scripts from starting the system's Postfix: policy-rc.d answers 101
  # ("action not allowed") to invoke-rc.d for the length of the install, then goes.
  POLICY=/usr/sbin/policy-rc.d
  HAD_POLICY=0
  [ -e "$POLICY" ] && HAD_POLICY=1
  if [ "$HAD_POLICY" -eq 0 ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
    $SUDO chmod 755 "$POLICY"
  fi
  cleanup() { if [ "$HAD_POLICY" -eq 0 ]; then $SUDO rm -f "$POLICY"; fi; }
  trap cleanup EXIT
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need_apt[@]}"
  cleanup
  trap - EXIT
else
  echo "install-peers: postfix, smtp-source, smtp-sink and swaks already installed"
fi
# Never run the system instance for the bench (a no-op where it isn't running or enabled).
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  $SUDO systemctl disable --now postfix >/dev/null 2>&1 || true
fi

# npm peers, in a folder the bench owns.
mkdir -p "$PEERS_DIR"
if [ ! -f "$PEERS_DIR/package.json" ]; then
  cat > "$PEERS_DIR/package.json" <<'JSON'
{
  "name": "postern-bench-peers",
  "private": true,
  "description": "Peers the postern bench compares with (scripts/install-peers.sh); not postern's dependencies."
}
JSON
fi
# Pinned: both declare engines node >=20 and were run on Node 20 by the bench (Haraka's
# node-gyp dependency pulls a few helpers whose engines say >=22: npm warns EBADENGINE, and
# they are never loaded — node-gyp only builds optional native plugins, which the bench skips).
HARAKA_VERSION=3.3.4
SMTP_SERVER_VERSION=3.21.6
installed() { node -p "try { require('$PEERS_DIR/node_modules/$1/package.json').version } catch { '' }" 2>/dev/null; }
missing=()
[ "$(installed Haraka)" = "$HARAKA_VERSION" ] || missing+=("Haraka@$HARAKA_VERSION")
[ "$(installed smtp-server)" = "$SMTP_SERVER_VERSION" ] || missing+=("smtp-server@$SMTP_SERVER_VERSION")
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-peers: npm install ${missing[*]} into bench/.peers"
  # --ignore-scripts: no native builds (modern-syslog, for Haraka's syslog plugin, is not used).
  npm install --prefix "$PEERS_DIR" --no-audit --no-fund --ignore-scripts --save-exact --loglevel=error "${missing[@]}"
else
  echo "install-peers: Haraka $HARAKA_VERSION and smtp-server $SMTP_SERVER_VERSION already in bench/.peers"
fi

echo "install-peers: done"
/usr/sbin/postconf -d mail_version 2>/dev/null || true
node -e "for (const p of ['Haraka','smtp-server']) console.log(p, require('$PEERS_DIR/node_modules/'+p+'/package.json').version)"
