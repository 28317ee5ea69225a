#!/usr/bin/env bash
# Builds the Debian package: the release binary, its manual pages and shell completions (made
# by the binary itself, so they always match its command line), then `cargo deb`. Installs
# cargo-deb first if it is missing. Prints the path of the .deb.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! cargo deb --version >/dev/null 2>&1; then
    cargo install cargo-deb --locked --version '^3' >&2
fi
cargo build --release --bin docket >&2
assets=target/assets
rm -rf "$assets"
mkdir -p "$assets/completions"
target/release/docket man "$assets/man"
target/release/docket completions bash >"$assets/completions/docket"
target/release/docket completions zsh >"$assets/completions/_docket"
target/release/docket completions fish >"$assets/completions/docket.fish"
rm -f target/debian/docket_*.deb
cargo deb --no-build --strip >&2
ls target/debian/docket_*.deb
