#!/usr/bin/env bash
# The Debian package, checked with Debian's own tools, then installed, run, upgraded, removed
# and purged in a clean Debian 12 root filesystem (debootstrap, cached under /var/tmp; each run
# works on a fresh copy):
#   - control and contents: Depends computed (libpcap0.8), the conffile, the unit, manual
#     pages, completions; `lintian` with no error or warning;
#   - the unit: `systemd-analyze verify` against the installed files, `systemd-analyze
#     security` exposure at most 2.0 ("OK");
#   - install with apt: the docket user, directories with their owners and modes; the unit's
#     own ExecStart line run as the docket user (this environment has no systemd as PID 1)
#     answers a query with the packets tcpdump finds; the audit log is written;
#   - upgrade keeps the edited configuration and the spool; remove keeps the configuration;
#     purge leaves nothing of Docket's but its system user (Debian's practice).
# Needs root. Traffic: loopback only (and the Debian mirror for debootstrap and apt).
set -euo pipefail
cd "$(dirname "$0")/.."
corpus="${DOCKET_PCAPS:-../shared/pcaps}"
fail() {
    echo "package check failed: $*" >&2
    exit 1
}
missing=()
for p in lintian debootstrap; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

deb=$(conf/debian/build.sh | tail -n 1)
echo "package: $deb"

# Control and contents.
depends=$(dpkg-deb -f "$deb" Depends)
[[ $depends == *libpcap0.8* && $depends == *adduser* && $depends == *procps* ]] || fail "Depends: $depends"
contents=$(dpkg-deb -c "$deb" | awk '{print $6}')
for f in ./usr/bin/docket ./etc/docket/docket.toml ./usr/lib/systemd/system/docket.service \
    ./usr/share/man/man1/docket.1.gz ./usr/share/man/man1/docket-serve.1.gz \
    ./usr/share/bash-completion/completions/docket ./usr/share/zsh/vendor-completions/_docket \
    ./usr/share/fish/vendor_completions.d/docket.fish ./usr/share/doc/docket/copyright \
    ./usr/share/doc/docket/examples/docket.toml; do
    grep -qx -- "$f" <<<"$contents" || fail "$f is not in the package"
done
dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles | grep -qx /etc/docket/docket.toml ||
    fail "/etc/docket/docket.toml is not a conffile"
lintian --fail-on error,warning "$deb"
# Exposure is reported in tenths by --threshold: 20 means 2.0, the top of "OK".
systemd-analyze security --offline=yes --threshold=20 conf/debian/docket.service | tail -n 1

# A clean Debian 12 root filesystem.
cache=${DOCKET_ROOTFS_CACHE:-/var/tmp/docket-rootfs-bookworm}
if [ ! -x "$cache/usr/bin/apt-get" ]; then
    rm -rf "$cache.tmp"
    debootstrap --variant=minbase bookworm "$cache.tmp" http://deb.debian.org/debian >/dev/null
    mv "$cache.tmp" "$cache"
fi
root=$(mktemp -d /var/tmp/docket-package.XXXXXX)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    umount "$root/proc" 2>/dev/null || true
    umount "$root/dev" 2>/dev/null || true
    rm -rf "$root"
}
trap cleanup EXIT
cp -a "$cache/." "$root/"
mount -t proc proc "$root/proc"
mount --bind /dev "$root/dev"
cp /etc/resolv.conf "$root/etc/resolv.conf"
in_root() { chroot "$root" env DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 "$@"; }
snapshot() {
    # Every path of the system but what apt and dpkg keep of their own work.
    (cd "$root" && find . -xdev \( -path ./proc -o -path ./dev -o -path ./tmp -o -path ./var/cache \
        -o -path ./var/lib/apt -o -path ./var/lib/dpkg -o -path ./var/log \
        -o -path ./etc/resolv.conf \) -prune -o -print | sort)
}
in_root apt-get update -q >/dev/null
# What a host that runs systemd units has: systemd itself, and man-db for the unit's
# Documentation= page.
# So is what the package depends on: what the purge must leave is the system as it was then.
deps=$(sed -e 's/([^)]*)//g' -e 's/,/ /g' <<<"$depends")
# shellcheck disable=SC2086
in_root apt-get install -y -q --no-install-recommends systemd man-db $deps >/dev/null
before=$(snapshot)
cp "$deb" "$root/tmp/docket.deb"
in_root apt-get install -y -q /tmp/docket.deb >/dev/null

# The user, and what it owns.
in_root getent passwd docket >/dev/null || fail "no docket user"
check_mode() {
    local got
    got=$(in_root stat -c '%U:%G %a' "$1")
    [ "$got" = "$2" ] || fail "$1 is $got, not $2"
}
check_mode /var/spool/docket "docket:docket 750"
check_mode /var/lib/docket/index "docket:docket 750"
check_mode /var/log/docket "docket:adm 2750"
check_mode /etc/docket/docket.toml "root:root 644"
check_mode /usr/bin/docket "root:root 755"
# The unit against the installed files (the command and the manual page it names exist).
in_root systemd-analyze verify /usr/lib/systemd/system/docket.service

# The unit's own command line, as the docket user, on sample captures.
exec_start=$(sed -n 's/^ExecStart=//p' "$root/usr/lib/systemd/system/docket.service")
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
sed -i "s/^listen = .*/listen = \"127.0.0.1:$port\"/" "$root/etc/docket/docket.toml"
cp "$corpus"/merge/*.pcap* "$root/var/lib/docket/captures/"
mkfifo "$root/tmp/ready"
chroot --userspec=docket:docket "$root" $exec_start >"$root/tmp/ready" 2>"$root/tmp/docket.log" &
pid=$!
read -r -t 120 line <"$root/tmp/ready" || fail "no readiness line: $(cat "$root/tmp/docket.log")"
base=${line#docket listening on }
[ "$(awk '/^Uid:/{print $2}' "/proc/$pid/status")" = "$(in_root id -u docket)" ] ||
    fail "docket does not run as the docket user"
curl -sS --max-time 60 -f "${base}readyz" >/dev/null || fail "readyz: $(curl -sS "${base}readyz")"
query='host/2620:1ec:c11::200/port/443/after/2021-01-05T06:55:00Z/before/2021-01-05T07:00:00Z'
curl -sS --max-time 120 -f -o "$root/tmp/answer.pcap" "${base}q/$query/pcap"
got=$(tshark -r "$root/tmp/answer.pcap" 2>/dev/null | wc -l)
want=0
for f in "$root"/var/lib/docket/captures/*; do
    n=$(tcpdump -r "$f" 'host 2620:1ec:c11::200 and port 443' 2>/dev/null | wc -l)
    want=$((want + n))
done
[ "$got" -gt 0 ] && [ "$got" = "$want" ] || fail "the answer has $got packets, tcpdump finds $want"
grep -q '"event":"end"' "$root/var/log/docket/audit.log" || fail "no audit line"
spooled=$(ls "$root"/var/spool/docket/*.pcap 2>/dev/null | wc -l)
[ "$spooled" -ge 1 ] || fail "nothing in the spool"
kill -TERM "$pid"
wait "$pid" || fail "docket did not stop cleanly on SIGTERM"
pid=

# Upgrade: the edited configuration and the spool stay.
in_root apt-get install -y -q --reinstall -o Dpkg::Options::=--force-confold /tmp/docket.deb >/dev/null
grep -q "127.0.0.1:$port" "$root/etc/docket/docket.toml" || fail "the upgrade replaced the edited configuration"
[ "$(ls "$root"/var/spool/docket/*.pcap | wc -l)" = "$spooled" ] || fail "the upgrade touched the spool"
# Remove keeps the configuration; purge removes everything of Docket's but its user (its
# entries in the account files).
in_root apt-get remove -y -q docket >/dev/null
[ -f "$root/etc/docket/docket.toml" ] || fail "remove deleted the configuration"
# Capture files put in the capture directory are the admin's: purge keeps them (and their
# directory); without them, the directory goes too.
in_root apt-get purge -y -q docket >/dev/null
[ -n "$(ls "$root"/var/lib/docket/captures)" ] || fail "purge deleted capture files"
[ ! -e "$root/var/spool/docket" ] && [ ! -e "$root/var/lib/docket/index" ] &&
    [ ! -e "$root/var/log/docket" ] || fail "purge left the spool, the indexes or the logs"
in_root apt-get install -y -q /tmp/docket.deb >/dev/null
rm -f "$root"/var/lib/docket/captures/*
in_root apt-get purge -y -q docket >/dev/null
after=$(snapshot)
left=$(comm -13 <(echo "$before") <(echo "$after") |
    grep -v -E '^\./(run(/.*)?|etc/(passwd|group|shadow|gshadow|subuid|subgid)-?)$' || true)
[ -z "$left" ] || fail "purge left: $left"
in_root getent passwd docket >/dev/null || fail "the docket user went with the purge"
echo "package checks passed"
