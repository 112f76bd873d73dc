#!/usr/bin/env bash
# Make sure a headless browser for the web page test is here: install Debian's chromium and
# chromium-driver when chromedriver is missing. Idempotent; does nothing when both are installed.
# Checks that the browser starts headless (as root it needs --no-sandbox, which the test passes too).
set -euo pipefail

log() { printf '[ensure-browser] %s\n' "$*" >&2; }

if ! command -v chromedriver >/dev/null || ! command -v chromium >/dev/null; then
    if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null; then
        log "no chromedriver here: install chromium and chromium-driver (needs root and apt)"
        exit 1
    fi
    log "installing chromium and chromium-driver from Debian"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi

if ! out=$(timeout 60 chromium --headless=new --no-sandbox --disable-gpu --dump-dom \
    'data:text/html,<p id=ok>ok</p>' 2>/dev/null) || [[ $out != *'id="ok"'* ]]; then
    log "chromium is installed but does not start headless: try chromium --headless=new --no-sandbox"
    exit 1
fi
