#!/usr/bin/env bash
# What the wallet service's tests need on a fresh Debian machine, run as root before `make test`:
# PostgreSQL's server binaries (the tests start throwaway clusters of their own with initdb and
# pg_ctl, so no system service is used) and Chromium (the dashboard test drives it headless
# through Playwright, installed by `make test` with the dev extra; it never downloads a browser).
# Idempotent: installs only what is missing, and says nothing otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
command -v chromium >/dev/null || missing+=(chromium)
dpkg -s fonts-dejavu-core >/dev/null 2>&1 || missing+=(fonts-dejavu-core)
if ((${#missing[@]})); then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
