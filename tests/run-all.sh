#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine: installs the real tools the tests use
# as oracles, checks formatting and lints, runs every test, and fuzzes each target briefly when
# cargo-fuzz is available. `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# What building needs beside the Rust toolchain: gcc (rustc's linker, and the C parts of the
# bundled SQLite and zstd), ca-certificates (cargo fetches crates over HTTPS). iproute2 (the
# sensors' network namespaces) and groff-base (the manual pages are rendered) are not in a
# minimal Debian either.
# Real tools: tshark/mergecap/capinfos/editcap (oracles), tcpdump, libpcap (the BPF compiler);
# curl, openssl and python3 (clients, test certificates, the fault-sensor server); real
# Stenographer sensors with tcpreplay and jq (../shared/steno/up.sh would install them too, but
# two sensor sets starting at once would then race for the dpkg lock); for the front door:
# apache2-utils (`htpasswd -B`/`-s`), headless Chromium and chromedriver (the browser test);
# fuse3 and python3-fusepy (a real hung mount for the bad-days tests); lz4 and zstd (the
# compressors that write the compressed capture stores; gzip is always there); python3-scapy
# (writes one packet per encapsulation for the structured-clause test); prometheus (scrapes a
# live Docket; its promtool lints the exposition).
packages=(gcc ca-certificates iproute2 groff-base tshark wireshark-common tcpdump libpcap-dev curl openssl python3
    stenographer stenographer-client tcpreplay jq apache2-utils chromium chromium-driver
    fuse3 python3-fusepy lz4 zstd python3-scapy prometheus)
missing=()
for p in "${packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [ ! -d "${DOCKET_PCAPS:-../shared/pcaps}" ]; then
    echo "the team corpus is missing: expected ${DOCKET_PCAPS:-../shared/pcaps}" >&2
    exit 1
fi

cargo fmt --all -- --check
# --all-targets also runs each criterion bench once in test mode, so a broken bench fails here.
cargo test --all-targets
# Clippy after the build, not before: on a fresh target directory, running clippy first left a
# target-information cache (`target/.rustc_info.json`) that broke the next plain cargo call.
cargo clippy --all-targets -- -D warnings

# The Debian package: built, linted, installed, run as its service user, upgraded and purged in
# a clean Debian 12 root filesystem.
tests/package.sh

if [ -x fuzz/run.sh ]; then
    FUZZ_SECONDS="${FUZZ_SECONDS:-20}" fuzz/run.sh
fi
