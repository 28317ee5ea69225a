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
# Wherever cargo builds (CARGO_TARGET_DIR, a workspace setting): cargo-deb reads the assets'
# `target/release/…` paths from there too.
target=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
docket="$target/release/docket"
assets="$target/release/assets"
rm -rf "$assets"
mkdir -p "$assets/completions"
"$docket" man "$assets/man"
# Compressed as Debian's policy asks (-n: no name or time inside, so the package is
# reproducible).
gzip -9n "$assets"/man/*.1
"$docket" completions bash >"$assets/completions/docket"
"$docket" completions zsh >"$assets/completions/_docket"
"$docket" completions fish >"$assets/completions/docket.fish"
rm -f "$target"/debian/docket_*.deb
cargo deb --no-build --strip >&2
ls "$target"/debian/docket_*.deb
