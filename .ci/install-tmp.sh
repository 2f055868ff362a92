#!/usr/bin/env bash
# CI: formatting, lints, dependency checks, then the README's test command.
# Installs everything the tests need on a fresh machine: the reference peers for interop
# (crates.io), Chromium for the browser test (Debian) and the browser harness (npm).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TERM_COLOR=never

step() { printf '\n=== %s\n' "$*"; }

step "reference peers (interop tests need them; they stay cached in ~/.cargo/bin)"
# moq-relay with its WebSocket (QMux) endpoint: `--web-ws` shows that feature is built in.
if ! moq-relay --help 2>/dev/null | grep -q -- '--web-ws'; then
  cargo install --force moq-relay --version 0.17.10 --no-default-features --features noq,websocket
fi
# The reference token tool (binary `moq-token`): the outside oracle of the auth tests.
if ! moq-token --help >/dev/null 2>&1; then
  cargo install moq-token-cli --version 0.5.48 --locked
fi
if ! moq-clock --help >/dev/null 2>&1; then
  cargo install moq-clock --version 0.10.21
fi
# The reference media publisher, moq-cli 0.14.10 (binary `moq`, installed as `moq-cli` so it
# never shadows our `moq`). Its Cargo.lock pins webpki-roots 1.0.11, which the crates.io mirror
# here does not serve, so `cargo install --locked` fails: unpack the crate, move that one entry
# to 1.0.10 and install from the path, still locked otherwise (about 13 minutes on 2 cores).
if ! moq-cli --help >/dev/null 2>&1; then
  work=$(mktemp -d)
  cargo info moq-cli@0.14.10 >/dev/null
  tar xzf "$(ls ~/.cargo/registry/cache/*/moq-cli-0.14.10.crate | head -n1)" -C "$work"
  (cd "$work/moq-cli-0.14.10" &&
    cargo update -p webpki-roots --precise 1.0.10 &&
    cargo install --path . --no-default-features --features noq --locked --root "$work/root")
  cp "$work/root/bin/moq" "$HOME/.cargo/bin/moq-cli"
  rm -rf "$work"
fi

step "browser and media test tools: Chromium, Firefox ESR and ffmpeg (Debian); @moq/net, @moq/watch, playwright-core and puppeteer-core (npm, pinned lockfiles)"
missing=""
[ -x /usr/bin/chromium ] || missing="$missing chromium"
command -v ip >/dev/null 2>&1 || missing="$missing iproute2"
[ -x /usr/bin/firefox-esr ] || missing="$missing firefox-esr"
command -v ffmpeg >/dev/null 2>&1 || missing="$missing ffmpeg"
command -v nft >/dev/null 2>&1 || missing="$missing nftables"
if [ -n "$missing" ]; then
  export DEBIAN_FRONTEND=noninteractive
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
  $SUDO apt-get update
  # shellcheck disable=SC2086
  $SUDO apt-get install -y --no-install-recommends $missing
fi
(cd tests/browser && npm ci --no-audit --no-fund && npm run build)
(cd tests/player && npm ci --no-audit --no-fund && npm run build)

