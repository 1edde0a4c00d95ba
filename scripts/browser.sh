#!/usr/bin/env bash
# Headless Chromium for the `mvault serve` page test (scripts/serve-browser-test.sh).
#   scripts/browser.sh install   installs Debian's `chromium` package when /usr/bin/chromium
#                                is missing (as root, or through sudo when it is available)
#   scripts/browser.sh path      prints the browser's path
set -euo pipefail
BROWSER=/usr/bin/chromium

install() {
    [[ -x $BROWSER ]] && return 0
    local sudo=()
    if [[ $(id -u) != 0 ]]; then
        command -v sudo >/dev/null || { echo "browser.sh: need root or sudo to install chromium" >&2; exit 1; }
        sudo=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends chromium >/dev/null
    [[ -x $BROWSER ]] || { echo "browser.sh: $BROWSER missing after install" >&2; exit 1; }
}

case "${1:-}" in
    install) install ;;
    path) echo "$BROWSER" ;;
    *) echo "usage: scripts/browser.sh install|path" >&2; exit 2 ;;
esac
