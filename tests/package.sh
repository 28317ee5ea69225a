#!/usr/bin/env bash
# The Debian package, checked with Debian's own tools, then installed, run as a service,
# upgraded, removed and purged in a clean Debian 12 root filesystem (debootstrap, cached under
# /var/tmp; each run works on a fresh copy) booted with systemd as its PID 1 (systemd-nspawn;
# this machine's own PID 1 is not systemd):
#   - control and contents: Depends computed (libpcap0.8), the conffile, the unit, manual
#     pages, completions; `lintian` with no error or warning;
#   - the unit: `systemd-analyze verify` against the installed files, `systemd-analyze
#     security` exposure at most 2.0 ("OK");
#   - `apt install ./docket_*.deb`: the docket user, directories with their owners and modes;
#     systemd starts the enabled unit with every sandboxing setting, as the docket user, and
#     it is active only once it answers (Type=notify); a query returns the packets tcpdump
#     finds; the audit log is written; reload (SIGHUP) keeps it running; stop is clean;
#   - upgrade keeps the edited configuration and the spool and restarts the service; remove
#     keeps the configuration; purge leaves nothing of Docket's but its system user (Debian's
#     practice) and capture files an admin put in its capture directory.
# Needs root. Traffic: loopback only (and the Debian mirror for debootstrap and apt).
set -euo pipefail
cd "$(dirname "$0")/.."
corpus="${DOCKET_PCAPS:-../shared/pcaps}"
fail() {
    echo "package check failed: $*" >&2
    exit 1
}
missing=()
for p in lintian debootstrap systemd-container; do
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
nspawn=
init=
cleanup() {
    # Best effort, every step: a step that finds nothing to do must not stop the others.
    set +e
    if [ -n "$nspawn" ]; then
        [ -n "$init" ] && nsenter -t "$init" -a systemctl poweroff 2>/dev/null
        # Bounded: the container gets 20 s to power off; then its PID 1 is killed, which ends
        # every process of its PID namespace (killing nspawn alone would leave them running).
        for _ in $(seq 40); do kill -0 "$nspawn" 2>/dev/null || break; sleep 0.5; done
        [ -n "$init" ] && kill -KILL "$init" 2>/dev/null
        kill -KILL "$nspawn" 2>/dev/null
        wait "$nspawn" 2>/dev/null || true
    fi
    umount -R "$root/proc" 2>/dev/null
    # Never delete through a mount: if anything is still mounted under the copy, leave it.
    if grep -q " $root/" /proc/mounts; then
        echo "left $root in place: still mounted: $(grep " $root/" /proc/mounts)" >&2
    else
        rm -rf --one-file-system "$root" "$root.boot.log"
    fi
}
trap cleanup EXIT
cp -a "$cache/." "$root/"
cp /etc/resolv.conf "$root/etc/resolv.conf"
# What a host that runs systemd units has (systemd; man-db for the unit's Documentation=), and
# what the package depends on: the purge must leave the system as it was then. (debootstrap
# made the device nodes the new system needs: this machine's /dev is not mounted into it.)
mount -t proc proc "$root/proc"
deps=$(sed -e 's/([^)]*)//g' -e 's/,/ /g' <<<"$depends")
chroot "$root" apt-get update -q >/dev/null
# shellcheck disable=SC2086
chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    systemd systemd-sysv man-db $deps >/dev/null
umount "$root/proc"

# Boot it: systemd as PID 1 of a container sharing this machine's network (Docket listens on
# loopback, reachable from here).
systemd-nspawn -D "$root" --boot --register=no --keep-unit --console=passive --quiet \
    >"$root.boot.log" 2>&1 &
nspawn=$!
for _ in $(seq 100); do
    # The container's PID 1 is the child of nspawn that runs systemd (a first, short-lived
    # child only sets it up).
    init=$(ps -o pid=,comm= --ppid "$nspawn" | awk '$2 == "systemd" {print $1}' | head -n 1 || true)
    [ -n "$init" ] && break
    sleep 0.2
done
[ -n "$init" ] || fail "the container did not start: $(cat "$root.boot.log")"
in_root() { nsenter -t "$init" -a env DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 "$@"; }
state=$(timeout 120 nsenter -t "$init" -a systemctl is-system-running --wait || true)
[[ $state == running || $state == degraded ]] || fail "systemd in the container: $state"
snapshot() {
    # Every path of the system but what apt, dpkg, the journal and the running system keep.
    (cd "$root" && find . -xdev \( -path ./proc -o -path ./dev -o -path ./tmp -o -path ./run \
        -o -path ./var/cache -o -path ./var/lib/apt -o -path ./var/lib/dpkg -o -path ./var/log \
        -o -path ./var/tmp -o -path ./var/lib/systemd -o -path ./etc/resolv.conf \) -prune -o -print | sort)
}
before=$(snapshot)
# /root: the container's /tmp is its own tmpfs.
cp "$deb" "$root/root/docket.deb"
in_root apt-get install -y -q /root/docket.deb >/dev/null

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

# The installed service, started by systemd (the package enabled and started it), on sample
# captures and a port of this test's choosing.
[ "$(in_root systemctl is-enabled docket)" = enabled ] || fail "the unit is not enabled"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
sed -i "s/^listen = .*/listen = \"127.0.0.1:$port\"/" "$root/etc/docket/docket.toml"
cp "$corpus"/merge/*.pcap* "$root/var/lib/docket/captures/"
in_root systemctl restart docket
show() { in_root systemctl show docket -p "$1" --value; }
[ "$(show ActiveState)" = active ] || fail "not active: $(in_root journalctl -u docket --no-pager | tail)"
main=$(show MainPID)
[ "$(in_root awk '/^Uid:/{print $2}' "/proc/$main/status")" = "$(in_root id -u docket)" ] ||
    fail "docket does not run as the docket user"
[[ $(show StatusText) == "docket listening on http://127.0.0.1:$port/app/docket/" ]] ||
    fail "status: $(show StatusText)"
# Type=notify: active means answering. The time from exec to READY=1 is what Type=exec would
# report as "started" too early.
start_us=$(show ExecMainStartTimestampMonotonic)
ready_us=$(show ActiveEnterTimestampMonotonic)
echo "service: READY=1 came $(((ready_us - start_us) / 1000)) ms after exec"
base="http://127.0.0.1:$port/app/docket/"
curl -sS --max-time 60 -f "${base}healthz" >/dev/null || fail "healthz right after start"
curl -sS --max-time 60 -f "${base}readyz" >/dev/null || fail "readyz: $(curl -sS "${base}readyz")"
query='host/2620:1ec:c11::200/port/443/after/2021-01-05T06:55:00Z/before/2021-01-05T07:00:00Z'
curl -sS --max-time 120 -f -o "$root.answer.pcap" "${base}q/$query/pcap"
got=$(tshark -r "$root.answer.pcap" 2>/dev/null | wc -l)
rm -f "$root.answer.pcap"
want=0
for f in "$root"/var/lib/docket/captures/*; do
    n=$(tcpdump -r "$f" 'host 2620:1ec:c11::200 and port 443' 2>/dev/null | wc -l)
    want=$((want + n))
done
[ "$got" -gt 0 ] && [ "$got" = "$want" ] || fail "the answer has $got packets, tcpdump finds $want"
grep -q '"event":"end"' "$root/var/log/docket/audit.log" || fail "no audit line"
spooled=$(ls "$root"/var/spool/docket/*.pcap 2>/dev/null | wc -l)
[ "$spooled" -ge 1 ] || fail "nothing in the spool"
in_root systemctl reload docket
[ "$(show MainPID)" = "$main" ] && [ "$(show ActiveState)" = active ] || fail "reload restarted it"
in_root systemctl stop docket
# Exit 0 after SIGTERM is the graceful path's alone (a panic exits 101, a kill by signal is
# not "exited").
[ "$(show Result)" = success ] && [ "$(show ExecMainCode)" = 1 ] && [ "$(show ExecMainStatus)" = 0 ] ||
    fail "stop: $(show Result) code $(show ExecMainCode) status $(show ExecMainStatus)"
in_root systemctl start docket

# Upgrade: the edited configuration and the spool stay, and the service runs again.
in_root apt-get install -y -q --reinstall -o Dpkg::Options::=--force-confold /root/docket.deb >/dev/null
grep -q "127.0.0.1:$port" "$root/etc/docket/docket.toml" || fail "the upgrade replaced the edited configuration"
[ "$(ls "$root"/var/spool/docket/*.pcap | wc -l)" = "$spooled" ] || fail "the upgrade touched the spool"
[ "$(show ActiveState)" = active ] || fail "not running after the upgrade"
# Remove stops it and keeps the configuration.
in_root apt-get remove -y -q docket >/dev/null
[ -f "$root/etc/docket/docket.toml" ] || fail "remove deleted the configuration"
[ "$(show ActiveState)" != active ] || fail "still running after remove"
# Capture files put in the capture directory are the admin's: purge keeps them (and their
# directory); without them, the directory goes too. Everything else of Docket's goes but its
# user (its entries in the account files).
in_root apt-get purge -y -q docket >/dev/null
[ -n "$(ls "$root"/var/lib/docket/captures)" ] || fail "purge deleted capture files"
[ ! -e "$root/var/spool/docket" ] && [ ! -e "$root/var/lib/docket/index" ] &&
    [ ! -e "$root/var/log/docket" ] || fail "purge left the spool, the indexes or the logs"
in_root apt-get install -y -q /root/docket.deb >/dev/null
rm -f "$root"/var/lib/docket/captures/* "$root/root/docket.deb"
in_root apt-get purge -y -q docket >/dev/null
after=$(snapshot)
left=$(comm -13 <(echo "$before") <(echo "$after") |
    grep -v -E '^\./etc/(passwd|group|shadow|gshadow|subuid|subgid)-?$' || true)
[ -z "$left" ] || fail "purge left: $left"
in_root getent passwd docket >/dev/null || fail "the docket user went with the purge"
rm -f "$root.boot.log"
echo "package checks passed"
exit 0
