#!/usr/bin/env bash
# Side by side: schild and Unbound on the same list, with dnsperf, on
# loopback only. Follows the peers' method (shared/reference/benchmarks.md):
# NSD serves allowed.test on 127.0.0.1:5310; Unbound loads the list as an RPZ
# zone (name + wildcard) on 127.0.0.1:5301; schild gets the same list as a
# `domains` feed (a listed name blocks its subdomains too) in forward mode to
# NSD on 127.0.0.1:5305. Usage, from the repository root:
#
#   cargo build --release --bin schild --example gen_lists
#   benches/dnsperf/run.sh [WORK_DIR=/tmp/schild-dnsperf] [N=1000000] [DUR=20]
#
# SYSTEMS (env) picks what runs, default "schild-u1 schild-u2 unbound":
# schild-uK is `schild serve` with server.udp_sockets = K. SCHILD_LOG (env)
# is passed as --log (default info, what a site runs: one log line per block).
#
# Every server is started here, its pid kept, and stopped (TERM, then KILL
# after 30 s) on exit. Every dnsperf run is bounded by -l DUR and by
# `timeout DUR+30`; every wait for a server by a deadline. Before each
# measurement the load average is recorded, and when the 1-minute load is
# above 1.5 (a shared box) the script waits up to QUIET_MAX s (30) for it to
# drop, and up to 3 minutes before the first one.
# Results: WORK_DIR/results.md, the dnsperf summaries in WORK_DIR/logs/.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
W=${1:-/tmp/schild-dnsperf}
N=${2:-1000000}
DUR=${3:-20}
SCHILD=${SCHILD:-$ROOT/target/release/schild}
SYSTEMS=${SYSTEMS:-schild-u1 schild-u2 unbound}
SCHILD_LOG=${SCHILD_LOG:-info}
LOAD_DEADLINE=${LOAD_DEADLINE:-300} # s to wait for a server's first NXDOMAIN
mkdir -p "$W"/{run,logs,conf}
W=$(cd "$W" && pwd)
NSD_PID=""
SERVER_PID=""
HZ=$(getconf CLK_TCK)

stop_pid() {
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  echo "pid $pid did not stop in 30 s: KILL" >&2
  kill -KILL "$pid" 2>/dev/null || true
}
stop_all() {
  [ -z "$SERVER_PID" ] || stop_pid "$SERVER_PID"
  [ -z "$NSD_PID" ] || stop_pid "$NSD_PID"
}
trap stop_all EXIT

for tool in dnsperf dig nsd unbound timeout; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install dnsperf bind9-dnsutils nsd unbound)"; exit 1; }
done
[ -x "$SCHILD" ] || { echo "no schild binary at $SCHILD: cargo build --release"; exit 1; }
"$SCHILD" --help | grep -q '^  serve' || { echo "$SCHILD has no 'serve': rebuild it"; exit 1; }

port_busy() { # port
  ss -Hlnu "sport = :$1" | grep -q . || ss -Hlnt "sport = :$1" | grep -q .
}
for p in 5301 5305 5310; do
  port_busy $p && { echo "127.0.0.1:$p is in use"; exit 1; }
done
ADMIN_PORT=9253
while port_busy $ADMIN_PORT; do ADMIN_PORT=$((ADMIN_PORT + 1)); done

# Wait (up to QUIET_MAX s, default 30) for the 1-minute load average to drop
# to 1.5, then print the `uptime` line the measurement started under. The
# previous run of this script raises the load itself (server + dnsperf ~ 2
# cores for DUR s), so a long wait here mostly waits for our own decay.
QUIET_MAX=${QUIET_MAX:-30}
quiet() {
  for _ in $(seq $((QUIET_MAX / 10))); do
    awk '{ exit !($1 > 1.5) }' /proc/loadavg || break
    sleep 10
  done
  uptime | sed 's/^ *//'
}

QUIET_MAX=${QUIET_FIRST:-180} quiet > /dev/null

# 1. Inputs, generated from the same seed as the criterion benches.
if [ ! -f "$W/domains.txt" ]; then
  GEN=$ROOT/target/release/examples/gen_lists
  if [ -x "$GEN" ]; then "$GEN" "$W" "$N"
  else (cd "$ROOT" && cargo run --release --example gen_lists -- "$W" "$N"); fi
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
nsd -c "$W/conf/nsd.conf" -d & NSD_PID=$!
for _ in $(seq 100); do
  dig +time=1 +tries=1 -p 5310 @127.0.0.1 host00000.allowed.test A 2>/dev/null | grep -q "status: NOERROR" && break
  sleep 0.1
done

# 3. Configs.
mkdir -p "$W/run/unbound"
cat > "$W/conf/unbound.conf" <<EOF
server:
    interface: 127.0.0.1@5301
    port: 5301
    do-ip6: no
    num-threads: 1
    so-reuseport: yes
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
schild_conf() { # udp_sockets -> path
  local f="$W/conf/schild-u$1.toml"
  mkdir -p "$W/state-u$1"
  cat > "$f" <<EOF
state_dir = "$W/state-u$1"

[server]
listen = ["127.0.0.1:5305"]
allow = ["127.0.0.0/8"]
udp_sockets = $1

[resolver]
mode = "forward"
upstreams = ["127.0.0.1:5310"]
dnssec = false

[admin]
listen = "127.0.0.1:$ADMIN_PORT"

[[feed]]
name = "bench"
type = "domains"
location = "$W/domains.txt"
action = "nxdomain"
refresh_secs = 86400   # no re-pull while measuring
EOF
  echo "$f"
}

# 4. Start a server, time spawn -> first NXDOMAIN for the last listed name,
#    then read its memory after 1 s and 11 s. Leaves the pid in $SERVER_PID.
start() { # name label port cmd...
  local name=$1 label=$2 port=$3; shift 3
  local up t0 t1 pid deadline
  up=$(quiet)
  t0=$(date +%s.%N)
  "$@" > "$W/logs/$name-$label.out" 2>&1 & pid=$!
  SERVER_PID=$pid
  deadline=$((SECONDS + LOAD_DEADLINE))
  until dig +time=1 +tries=1 -p "$port" @127.0.0.1 "$PROBE" A 2>/dev/null | grep -q "status: NXDOMAIN"; do
    kill -0 "$pid" 2>/dev/null || { echo "$name exited; see $W/logs/$name-$label.out"; exit 1; }
    [ $SECONDS -lt $deadline ] || { echo "$name: no NXDOMAIN for $PROBE in ${LOAD_DEADLINE}s"; exit 1; }
    sleep 0.05
  done
  t1=$(date +%s.%N)
  sleep 1
  local rss1 rss11 hwm cpu
  rss1=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  sleep 10
  rss11=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  cpu=$(awk -v hz="$HZ" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$pid/stat")
  printf '| %s | %s | %.2f | %d | %d | %d | %s | %s |\n' "$name" "$label" \
    "$(awk "BEGIN { print $t1 - $t0 }")" $((rss1 / 1024)) $((rss11 / 1024)) $((hwm / 1024)) \
    "$cpu" "$up" >> "$W/load.md"
}

ticks() { # pid -> utime+stime in clock ticks of it and its descendants
  # (NSD's started pid becomes xfrd; it serves from a grandchild); 0 when gone
  # (comm may hold spaces, "nsd: server 1": count fields after the last ')')
  local t c
  [ "${1:-0}" -gt 0 ] || { echo 0; return; }
  t=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{ print $12 + $13 }' || true)
  t=${t:-0}
  for c in $(pgrep -P "$1" 2>/dev/null); do
    t=$((t + $(ticks "$c")))
  done
  echo "$t"
}
busy() { # system-wide busy ticks (all but idle and iowait)
  awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat
}

# dnsperf for DUR s; CPU of server and dnsperf sampled over [2 s, DUR-1 s].
run_perf() { # name pid port qfile clients
  local name=$1 spid=$2 port=$3 q=$4 c=$5
  local out="$W/logs/dnsperf-$name-$(basename "$q" .txt)-c$c.log"
  local up; up=$(quiet)
  echo "# $up" > "$out"
  echo "# dnsperf -s 127.0.0.1 -p $port -d $(basename "$q") -c $c -q 200 -l $DUR -t 2" >> "$out"
  timeout $((DUR + 30)) dnsperf -s 127.0.0.1 -p "$port" -d "$q" -c "$c" -q 200 -l "$DUR" -t 2 >> "$out" 2>&1 &
  local tpid=$! dpid=""
  sleep 2
  dpid=$(pgrep -P "$tpid" dnsperf || true)
  local s0 d0 b0 t0 s1 d1 b1 t1
  s0=$(ticks "$spid"); d0=$(ticks "${dpid:-0}"); b0=$(busy); t0=$(date +%s.%N)
  sleep $((DUR - 3))
  s1=$(ticks "$spid"); d1=$(ticks "${dpid:-0}"); b1=$(busy); t1=$(date +%s.%N)
  wait "$tpid" || echo "dnsperf $name $q -c $c: exit $?" >&2
  local qps lost avg rcodes cores
  qps=$(awk '/Queries per second/ {printf "%.0f", $4}' "$out")
  lost=$(awk '/Queries lost/ {print $3}' "$out")
  avg=$(awk '/Average Latency/ {printf "%.3f", $4 * 1000}' "$out")
  rcodes=$(awk '/Response codes/ {sub(/.*Response codes: */, ""); print}' "$out")
  cores=$(awk -v s="$((s1 - s0))" -v d="$((d1 - d0))" -v b="$((b1 - b0))" -v t="$(awk "BEGIN { print $t1 - $t0 }")" -v hz="$HZ" \
    'BEGIN { printf "%.2f | %.2f | %.2f", s / hz / t, d / hz / t, (b - s - d) / hz / t }')
  echo "| $name | $(basename "$q") | $c | $qps | $avg | $lost | $rcodes | $cores | $up |" >> "$W/perf.md"
}

perf_suite() { # name pid port
  timeout 40 dnsperf -s 127.0.0.1 -p "$3" -d "$W/q-allowed.txt" -c 10 -q 200 -l 4 -t 2 > /dev/null 2>&1 || true # cache warm-up
  for q in q-exact q-wild q-allowed; do
    for c in 10 100; do run_perf "$1" "$2" "$3" "$W/$q.txt" $c; done
  done
}

# schild logs one line per blocked answer; keep the head of that log and
# its length, not gigabytes of it.
trim_log() { # file
  [ -f "$1" ] || return 0
  local lines; lines=$(wc -l < "$1")
  if [ "$lines" -gt 200 ]; then
    { head -n 100 "$1"; echo "... ($lines lines in all, trimmed by run.sh)"; tail -n 20 "$1"; } > "$1.trim"
    mv "$1.trim" "$1"
  fi
}

cat > "$W/load.md" <<EOF
| server | start | load s (spawn to first NXDOMAIN for $PROBE) | VmRSS MB +1 s | VmRSS MB +11 s | VmHWM MB | CPU s at +11 s | uptime before |
|---|---|---:|---:|---:|---:|---:|---|
EOF
cat > "$W/perf.md" <<EOF
| server | query file | -c | qps | avg latency ms | lost | rcodes | server cores | dnsperf cores | other cores | uptime before |
|---|---|---:|---:|---:|---:|---|---:|---:|---:|---|
EOF

for sys in $SYSTEMS; do
  case $sys in
    schild-u*)
      k=${sys#schild-u}
      conf=$(schild_conf "$k")
      # Cold: no artifact in state_dir, so `serve` compiles the feed first;
      # the load time includes that compile.
      rm -rf "$W/state-u$k"; mkdir -p "$W/state-u$k"
      start "$sys" cold 5305 "$SCHILD" --log "$SCHILD_LOG" serve --config "$conf"
      stop_pid "$SERVER_PID"; SERVER_PID=""
      # Restart: the compiled artifact is on disk (mmap + verify only).
      start "$sys" restart 5305 "$SCHILD" --log "$SCHILD_LOG" serve --config "$conf"
      perf_suite "$sys" "$SERVER_PID" 5305
      stop_pid "$SERVER_PID"; SERVER_PID=""
      trim_log "$W/logs/$sys-cold.out"; trim_log "$W/logs/$sys-restart.out"
      ;;
    unbound)
      start unbound rpz-load 5301 unbound -d -c "$W/conf/unbound.conf"
      perf_suite unbound "$SERVER_PID" 5301
      stop_pid "$SERVER_PID"; SERVER_PID=""
      ;;
    *) echo "unknown system $sys"; exit 1 ;;
  esac
done
# The ceiling of this box: NSD answering allowed.test itself.
for c in 10 100; do run_perf nsd-ceiling "$NSD_PID" 5310 "$W/q-allowed.txt" $c; done

{ echo "# dnsperf side by side ($(date -u +%F), N=$N, ${DUR}s runs, schild --log $SCHILD_LOG)"; echo;
  cat "$W/load.md"; echo; cat "$W/perf.md"; } > "$W/results.md"
cat "$W/results.md"
