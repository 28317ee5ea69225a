#!/usr/bin/env bash
# Can a user name be found by timing a wrong password? Median time of a failed login (HTTP
# Basic, plain HTTP on loopback) per kind of htpasswd entry, against an unknown user, in one
# run. An unknown user should cost what the file's median entry costs.
#
# Usage: benches/login-timing.sh   (N=60 requests per user; DOCKET_BIN to run a given build)
# Needs: curl, htpasswd, openssl. Traffic stays on 127.0.0.1; the server is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
n="${N:-60}"
if [ -n "${DOCKET_BIN:-}" ]; then docket="$DOCKET_BIN"; else cargo build --release -q; docket="$PWD/target/release/docket"; fi
dir=$(mktemp -d /tmp/docket-login.XXXXXX)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT
# KINDS: the entries in the file (default all four; "apr1 sha" is a ROCK-style file).
kinds="${KINDS:-apr1 bcrypt5 bcrypt10 sha}"
for k in $kinds; do
    case $k in
        apr1) echo "apr1:$(openssl passwd -apr1 secret)" ;;
        bcrypt5) htpasswd -nbB -C 5 bcrypt5 secret ;;
        bcrypt10) htpasswd -nbB -C 10 bcrypt10 secret ;;
        sha) htpasswd -nbs sha secret ;;
    esac
done > "$dir/htpasswd"
port=18191
cat > "$dir/docket.toml" <<TOML
listen = "127.0.0.1:$port"
spool_dir = "$dir/spool"
free_bytes = 0
[auth]
htpasswd = "$dir/htpasswd"
max_failures = 1000000
TOML
"$docket" serve -c "$dir/docket.toml" > "$dir/out" 2> "$dir/err" &
pid=$!
for _ in $(seq 100); do grep -q listening "$dir/out" 2>/dev/null && break; sleep 0.1; done
url="http://127.0.0.1:$port/app/docket/jobs"
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "median of $n failed logins (ms); the file holds: $kinds"
for user in nobody $kinds; do
    t=$(for _ in $(seq "$n"); do curl -s -o /dev/null -w '%{time_total}\n' -u "$user:wrong" "$url"; done | median)
    printf '  %-10s %7.2f\n' "$user" "$(python3 -c "print($t * 1000)")"
done
