#!/usr/bin/env bash
# The README's first command, as a newcomer runs it: in a clean Debian 12 root filesystem
# (debootstrap minbase, cached under /var/tmp, a fresh copy each run) with only the Rust
# toolchain added (this machine's rustup toolchain, mounted read-only), a copy of the checkout
# (`git archive HEAD`) and the team corpus beside it, `./run` installs what it needs with
# apt-get, builds and starts Docket; then the README's curl query must return the packets
# tshark finds in the sample captures for the same clauses.
#
# Not part of tests/run-all.sh: it builds Docket once more from nothing (minutes on 2 cores).
# Needs root. Traffic: loopback only (and the Debian mirror and crates.io for the build).
set -euo pipefail
cd "$(dirname "$0")/.."
corpus=$(realpath "${DOCKET_PCAPS:-../shared/pcaps}")
fail() {
    echo "quick start check failed: $*" >&2
    exit 1
}
command -v debootstrap >/dev/null ||
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap
cache=${DOCKET_ROOTFS_CACHE:-/var/tmp/docket-rootfs-bookworm}
if [ ! -x "$cache/usr/bin/apt-get" ]; then
    rm -rf "$cache.tmp"
    debootstrap --variant=minbase bookworm "$cache.tmp" http://deb.debian.org/debian >/dev/null
    mv "$cache.tmp" "$cache"
fi
root=$(mktemp -d /var/tmp/docket-quickstart.XXXXXX)
pid=
cleanup() {
    set +e
    # Everything started in the new system is one process group (setsid below): apt-get,
    # cargo and Docket all stop, so nothing keeps a mount busy.
    if [ -n "$pid" ]; then
        kill -TERM -- "-$pid" 2>/dev/null
        sleep 2
        kill -KILL -- "-$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    fi
    umount -R "$root/proc" "$root/src/shared/pcaps" "$root/root/.rustup" 2>/dev/null
    # Never delete through a mount: if anything is still mounted under the copy, leave it.
    if grep -q " $root/" /proc/mounts; then
        echo "left $root in place: still mounted: $(grep " $root/" /proc/mounts)" >&2
    else
        rm -rf --one-file-system "$root"
    fi
}
trap cleanup EXIT
# debootstrap made the device nodes the new system needs: this machine's /dev is not mounted
# into it.
cp -a "$cache/." "$root/"
cp /etc/resolv.conf "$root/etc/resolv.conf"
# This network's trust, like its resolver: where HTTPS is intercepted by a proxy, cargo must
# trust what this machine trusts (a machine on the open internet needs only Debian's bundle,
# which ./run installs).
cp /etc/ssl/certs/ca-certificates.crt "$root/root/network-ca.crt"
bind_ro() { # bind_ro SRC DEST: read-only, so nothing in the new system can change SRC
    mkdir -p "$2"
    mount --bind "$1" "$2"
    mount -o remount,bind,ro "$2"
}
mount -t proc proc "$root/proc"
bind_ro "${RUSTUP_HOME:-$HOME/.rustup}" "$root/root/.rustup"
mkdir -p "$root/root/.cargo/bin"
cp "${CARGO_HOME:-$HOME/.cargo}"/bin/{cargo,rustc,rustup} "$root/root/.cargo/bin/"
mkdir -p "$root/src/main" "$root/src/shared"
git archive HEAD | tar -x -C "$root/src/main"
bind_ro "$corpus" "$root/src/shared/pcaps"

# The README's first command, verbatim, as root in the new system.
mkfifo "$root/src/ready"
setsid chroot "$root" env -i HOME=/root PATH=/root/.cargo/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 CARGO_HTTP_CAINFO=/root/network-ca.crt bash -c 'cd /src/main && ./run --listen 127.0.0.1:0' \
    >"$root/src/ready" 2>"$root/src/run.log" &
pid=$!
# Bounded: installing and a release build from nothing. Docket's readiness line is the first
# line on standard output.
exec 3<"$root/src/ready"
read -r -t 1800 line <&3 || fail "no readiness line: $(tail -n 20 "$root/src/run.log")"
[[ $line == "docket listening on "* ]] || fail "first line: $line"
base=${line#docket listening on }
echo "quick start: $line; $(grep -m 1 '^installing' "$root/src/run.log" || echo 'nothing installed')"
query='host/2620:1ec:c11::200/port/443/after/2021-01-05T06:55:00Z/before/2021-01-05T07:00:00Z'
out=$(mktemp /var/tmp/docket-quickstart-answer.XXXXXX)
curl -fsSN --max-time 300 "${base}q/$query/pcap" -o "$out"
got=$(tshark -r "$out" 2>/dev/null | wc -l)
rm -f "$out"
# The oracle: tshark's display filter over every sample capture the configuration names.
filter='ipv6.addr == 2620:1ec:c11::200 && tcp.port == 443 && frame.time_epoch >= 1609829700 && frame.time_epoch < 1609830000'
want=0
for dir in merge bulk protocols; do
    for f in "$corpus/$dir"/*; do
        n=$(tshark -r "$f" -Y "$filter" 2>/dev/null | wc -l)
        want=$((want + n))
    done
done
[ "$got" -gt 0 ] && [ "$got" = "$want" ] || fail "the answer has $got packets, tshark finds $want"
echo "quick start checks passed: $got packets"
exit 0
