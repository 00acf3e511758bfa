#!/usr/bin/env bash
# Side by side: schild and Unbound on the same 1M list, with dnsperf, on
# loopback only. Follows the peers' method (shared/reference/benchmarks.md):
# NSD serves allowed.test on 127.0.0.1:5310; Unbound loads the list as an RPZ
# zone (name + wildcard) on 127.0.0.1:5301; schild gets the same list as a
# `domains` feed in forward mode to NSD on 127.0.0.1:5305.
#
# Needs `schild serve` (not on the bench branch when this was written; the
# script runs once it is merged). Usage, from the repository root:
#
#   cargo build --release
#   benches/dnsperf/run.sh [WORK_DIR=/tmp/schild-dnsperf] [N=1000000] [DUR=20]
#
# Every server is started here, its pid kept, and stopped (TERM, then KILL
# after 30 s) on exit. Results: WORK_DIR/results.md and WORK_DIR/logs/.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
W=${1:-/tmp/schild-dnsperf}
N=${2:-1000000}
DUR=${3:-20}
SCHILD=${SCHILD:-$ROOT/target/release/schild}
mkdir -p "$W"/{run,logs,state,conf}
W=$(cd "$W" && pwd)
PIDS=()

stop_all() {
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
}
trap stop_all EXIT

for tool in dnsperf dig nsd unbound; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install dnsperf bind9-dnsutils nsd unbound)"; exit 1; }
done
[ -x "$SCHILD" ] || { echo "no schild binary at $SCHILD: cargo build --release"; exit 1; }

# 1. Inputs, generated from the same seed as the criterion benches.
if [ ! -f "$W/domains.txt" ]; then
  (cd "$ROOT" && cargo run --release --example gen_lists -- "$W" "$N")
fi
PROBE=$(tail -n 1 "$W/domains.txt")

# 2. NSD for allowed.test.
mkdir -p "$W/run/nsd"
cat > "$W/conf/nsd.conf" <<EOF
server:
    ip-address: 127.0.0.1@5310
    server-count: 1
    username: ""
    chroot: ""
    zonesdir: "$W"
    database: ""
    zonelistfile: "$W/run/nsd/zone.list"
    xfrdfile: "$W/run/nsd/xfrd.state"
    xfrdir: "$W/run/nsd"
    pidfile: "$W/run/nsd/nsd.pid"
    logfile: "$W/logs/nsd.log"
    verbosity: 1
remote-control:
    control-enable: no
zone:
    name: "allowed.test"
    zonefile: "allowed.test.zone"
EOF
nsd -c "$W/conf/nsd.conf" -d & PIDS+=($!)

# 3. Configs.
mkdir -p "$W/run/unbound"
cat > "$W/conf/unbound.conf" <<EOF
server:
    interface: 127.0.0.1@5301
    port: 5301
    do-ip6: no
    num-threads: 1
    do-daemonize: no
    use-syslog: no
    logfile: "$W/logs/unbound.log"
    verbosity: 1
    username: ""
    chroot: ""
    directory: "$W/run/unbound"
    pidfile: "$W/run/unbound/unbound.pid"
    access-control: 127.0.0.0/8 allow
    local-zone: "test." nodefault
    do-not-query-localhost: no
    module-config: "respip validator iterator"
    statistics-interval: 0
remote-control:
    control-enable: no
stub-zone:
    name: "allowed.test"
    stub-addr: 127.0.0.1@5310
rpz:
    name: "rpz.local"
    zonefile: "$W/rpz-wild.zone"
    rpz-log: no
EOF
cat > "$W/conf/schild.toml" <<EOF
state_dir = "$W/state"

[server]
listen = ["127.0.0.1:5305"]

[resolver]
mode = "forward"
upstreams = ["127.0.0.1:5310"]
dnssec = false

[[feed]]
name = "bench"
type = "domains"
location = "$W/domains.txt"
action = "nxdomain"
EOF

# 4. Start a server, time spawn -> first NXDOMAIN for the last listed name,
#    then read its memory after 1 s and 11 s.
start() { # name port cmd...
  local name=$1 port=$2; shift 2
  local t0 pid
  t0=$(date +%s.%N)
  "$@" > "$W/logs/$name.out" 2>&1 & pid=$!
  PIDS+=("$pid")
  until dig +time=1 +tries=1 -p "$port" @127.0.0.1 "$PROBE" A 2>/dev/null | grep -q "status: NXDOMAIN"; do
    kill -0 "$pid" 2>/dev/null || { echo "$name exited; see $W/logs/$name.out"; exit 1; }
    sleep 0.05
  done
  local t1; t1=$(date +%s.%N)
  sleep 1
  local rss1; rss1=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  sleep 10
  local rss11 hwm; rss11=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  printf '| %s | %.2f | %d | %d | %d |\n' "$name" "$(awk "BEGIN { print $t1 - $t0 }")" \
    $((rss1 / 1024)) $((rss11 / 1024)) $((hwm / 1024)) >> "$W/load.md"
  echo "$pid" > "$W/run/$name.pid"
}

run_perf() { # name port qfile clients
  local out="$W/logs/dnsperf-$1-$(basename "$3" .txt)-c$4.log"
  dnsperf -s 127.0.0.1 -p "$2" -d "$3" -c "$4" -q 200 -l "$DUR" -t 2 > "$out" 2>&1
  local qps lost avg
  qps=$(awk '/Queries per second/ {print $4}' "$out")
  lost=$(awk '/Queries lost/ {print $3}' "$out")
  avg=$(awk '/Average Latency/ {print $4}' "$out")
  echo "| $1 | $(basename "$3") | $4 | $qps | $avg | $lost |" >> "$W/perf.md"
}

echo "| server | load s (spawn to first NXDOMAIN for $PROBE) | VmRSS MB +1 s | VmRSS MB +11 s | VmHWM MB |" > "$W/load.md"
echo "|---|---:|---:|---:|---:|" >> "$W/load.md"
echo "| server | query file | -c | qps | avg latency s | lost |" > "$W/perf.md"
echo "|---|---|---:|---:|---:|---:|" >> "$W/perf.md"

# schild compiles the feed on start; compile first so its load time is the
# server's start, as with a list already on disk.
"$SCHILD" compile --config "$W/conf/schild.toml" > "$W/logs/schild-compile.out" 2>&1
for sys in schild unbound; do
  case $sys in
    schild) port=5305; start schild $port "$SCHILD" serve --config "$W/conf/schild.toml" ;;
    unbound) port=5301; start unbound $port unbound -d -c "$W/conf/unbound.conf" ;;
  esac
  dnsperf -s 127.0.0.1 -p $port -d "$W/q-allowed.txt" -c 10 -q 200 -l 4 -t 2 > /dev/null 2>&1 # cache warm-up
  for q in q-exact q-wild q-allowed; do
    for c in 10 100; do run_perf $sys $port "$W/$q.txt" $c; done
  done
  pid=$(cat "$W/run/$sys.pid")
  kill -TERM "$pid"
done
# The ceiling of this box: NSD answering allowed.test itself.
for c in 10 100; do run_perf nsd-ceiling 5310 "$W/q-allowed.txt" $c; done

{ echo "# dnsperf side by side ($(date -u +%F), N=$N, ${DUR}s runs)"; echo; uptime; echo;
  cat "$W/load.md"; echo; cat "$W/perf.md"; } > "$W/results.md"
cat "$W/results.md"
