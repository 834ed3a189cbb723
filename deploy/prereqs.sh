#!/usr/bin/env bash
# Checks (default) or installs (`install`, as root or with sudo) the Debian packages listed in
# deploy/debian-packages.txt. `check` prints one line naming what is missing and how to install it.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
LIST=deploy/debian-packages.txt
missing=()
while read -r pkg provides _; do
  case "$pkg" in ''|'#'*) continue ;; esac
  case "$provides" in
    py:*) "$PYTHON" -c "import ${provides#py:}" 2>/dev/null || missing+=("$pkg") ;;
    file:*) [ -e "${provides#file:}" ] || missing+=("$pkg") ;;
    *) command -v "$provides" >/dev/null 2>&1 || missing+=("$pkg") ;;
  esac
done < "$LIST"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "riskwatch needs Python 3.11+ as \`$PYTHON\` (make PYTHON=/path/to/python3.11 ...)" >&2
  exit 1
fi
if [ "${1:-check}" = install ]; then
  [ ${#missing[@]} -eq 0 ] && exit 0
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  echo "installing Debian packages: ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  exit 0
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "missing prerequisites: install them with \`sudo apt-get install -y ${missing[*]}\` (or \`sudo deploy/prereqs.sh install\`; list: $LIST)" >&2
  exit 1
fi
