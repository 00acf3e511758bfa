#!/usr/bin/env bash
# Side by side: schild, Unbound, PowerDNS Recursor and Knot Resolver on the
# same list, with dnsperf, on loopback only, one after another. Follows the
# peers' method (shared/reference/benchmarks.md): NSD serves allowed.test on
# 127.0.0.1:5310; the peers load the list as an RPZ zone (name + *.name) and
# stub/forward allowed.test to NSD; schild gets the same list as a `domains`
# feed (a listed name blocks its subdomains too) in forward mode to NSD.
# Then a reload under load for schild. Usage, from the repository root:
#
#   cargo build --release --bin schild --example gen_lists
#   benches/dnsperf/run.sh [WORK_DIR=/tmp/schild-dnsperf] [N=1000000] [DUR=20]
#
# SYSTEMS (env) picks what runs and in which order, default
# "schild-u1 schild-u2 unbound pdns kresd"; schild-uK is `schild serve` with
# server.udp_sockets = K, and schild-uK-h0 the same with `[history] days = 0`
# (the name history off: its column against schild-uK's is what the history
# costs; the summary shows schild-uK/schild-uK-h0). RELOAD=0 skips the reload under load. The other
# knobs (CLIENTS, LATENCY, SCHILD_LOG, QUIET_*, RELOAD_*) are in README.md.
#
# Every server is started here, its pid kept, and stopped (TERM, then KILL
# after 30 s) when it is done and on exit. Every dnsperf run is bounded by
# -l and by `timeout`, every wait for a server by a deadline. Before each
# measurement the load average is recorded, and when the 1-minute load is
# above 1.5 (a shared box) the script waits up to QUIET_MAX s (30) for it to
# drop, and up to QUIET_FIRST s (180) before the first one.
# Results: WORK_DIR/results.md (the summary table first), dnsperf summaries
# in WORK_DIR/logs/, the raw figures in WORK_DIR/metrics.tsv.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
W=${1:-/tmp/schild-dnsperf}
N=${2:-1000000}
DUR=${3:-20}
SCHILD=${SCHILD:-$ROOT/target/release/schild}
GEN=${GEN:-$ROOT/target/release/examples/gen_lists}
SYSTEMS=${SYSTEMS:-schild-u1 schild-u2 unbound pdns kresd}
[ "$SYSTEMS" != none ] || SYSTEMS="" # none: only the reload (and the NSD line)
CLIENTS=${CLIENTS:-10 100}          # dnsperf -c values, each query kind
LATENCY=${LATENCY:-1}               # 1: dnsperf -v, for the 99th percentile
SCHILD_LOG=${SCHILD_LOG:-info}
LOAD_DEADLINE=${LOAD_DEADLINE:-300} # s to wait for a server's first NXDOMAIN
RELOAD=${RELOAD:-1}                 # 1: reload under load for schild at the end
RELOAD_PCT=${RELOAD_PCT:-1}         # % of the listed names replaced
RELOAD_AFTER=${RELOAD_AFTER:-5}     # s of load kept after the new list answers
RELOAD_AT=${RELOAD_AT:-5}           # s into that run when the reload is asked
RELOAD_DEADLINE=${RELOAD_DEADLINE:-120} # s to wait for a new name's NXDOMAIN
[ "$DUR" -ge 4 ] || { echo "DUR must be at least 4 s"; exit 1; }
mkdir -p "$W"/{run,logs,conf}
W=$(cd "$W" && pwd)
NSD_PID=""
SERVER_PID=""
HZ=$(getconf CLK_TCK)

stop_pid() {
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }; sleep 0.1; done
  echo "pid $pid did not stop in 30 s: KILL" >&2
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
stop_server() {
  [ -z "$SERVER_PID" ] || stop_pid "$SERVER_PID"
  SERVER_PID=""
}
stop_all() {
  stop_server
  [ -z "$NSD_PID" ] || stop_pid "$NSD_PID"
}
trap stop_all EXIT

for tool in dnsperf dig nsd timeout curl ss; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install dnsperf bind9-dnsutils nsd curl iproute2)"; exit 1; }
done
need_schild=0
for sys in $SYSTEMS; do
  case $sys in
    schild-u[0-9]*) need_schild=1 ;;
    unbound) command -v unbound >/dev/null || { echo "missing unbound (apt-get install unbound)"; exit 1; } ;;
    pdns) command -v pdns_recursor >/dev/null || { echo "missing pdns_recursor (apt-get install pdns-recursor)"; exit 1; } ;;
    kresd) command -v kresd >/dev/null || { echo "missing kresd (apt-get install knot-resolver)"; exit 1; } ;;
    *) echo "unknown system $sys (schild-uK, schild-uK-h0, unbound, pdns, kresd)"; exit 1 ;;
  esac
done
[ "$RELOAD" = 0 ] || need_schild=1
if [ $need_schild = 1 ]; then
  [ -x "$SCHILD" ] || { echo "no schild binary at $SCHILD: cargo build --release"; exit 1; }
  "$SCHILD" --help | grep -q '^  serve' || { echo "$SCHILD has no 'serve': rebuild it"; exit 1; }
fi

port_busy() { # port
  ss -Hlnu "sport = :$1" | grep -q . || ss -Hlnt "sport = :$1" | grep -q .
}
for p in 5301 5303 5304 5305 5310; do
  ! port_busy $p || { echo "127.0.0.1:$p is in use"; exit 1; }
done
ADMIN_PORT=9253
while port_busy $ADMIN_PORT; do ADMIN_PORT=$((ADMIN_PORT + 1)); done

# Wait (up to QUIET_MAX s, default 30) for the 1-minute load average to drop
# to 1.5, then print the `uptime` line the measurement started under. The
# previous run of this script raises the load itself (server + dnsperf ~ 2
# cores for DUR s), so a long wait here mostly waits for our own decay.
# Runs shorter than 10 s check the harness, they do not measure: no waits.
QUIET_DEF=30; [ "$DUR" -ge 10 ] || QUIET_DEF=0
QUIET_MAX=${QUIET_MAX:-$QUIET_DEF}
quiet() {
  for _ in $(seq $((QUIET_MAX / 10))); do
    awk '{ exit !($1 > 1.5) }' /proc/loadavg || break
    sleep 10
  done
  uptime | sed 's/^ *//'
}

QUIET_MAX=${QUIET_FIRST:-$((QUIET_DEF * 6))} quiet > /dev/null

# 1. Inputs, generated from the same seed as the criterion benches. A
#    WORK_DIR that holds a list of another size is refused, not mixed.
if [ -f "$W/domains.txt" ]; then
  have=$(wc -l < "$W/domains.txt")
  [ "$have" -eq "$N" ] || { echo "$W/domains.txt has $have names, not $N: use another WORK_DIR"; exit 1; }
else
  if [ -x "$GEN" ]; then "$GEN" "$W" "$N"
  else (cd "$ROOT" && cargo run --release --example gen_lists -- "$W" "$N"); fi
fi
PROBE=$(tail -n 1 "$W/domains.txt")
# The generator's list repeats a few names (999,981 distinct in 1M), and
# PowerDNS Recursor 4.8 stops loading an RPZ at the first duplicate
# ("a policy of kind . already exists", ignoreDuplicates is not in 4.8):
# the peers get the zone with each line once, in the same order. schild
# folds duplicates itself.
if [ ! -f "$W/rpz-peers.zone" ]; then
  awk '!seen[$0]++' "$W/rpz-wild.zone" > "$W/rpz-peers.zone.tmp"
  mv "$W/rpz-peers.zone.tmp" "$W/rpz-peers.zone"
fi

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

# 3. Configs. Every peer: one worker thread, the list as an RPZ zone, no
#    DNSSEC, allowed.test from NSD, runs as root in the foreground (no
#    privilege drop: the container has no service users set up for this).
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
    zonefile: "$W/rpz-peers.zone"
    rpz-log: no
EOF
# PowerDNS Recursor 4.8: threads=1 (its default is 2), packet cache on (its
# default); setuid/setgid empty = stay root.
mkdir -p "$W/conf/pdns"
cat > "$W/conf/pdns/recursor.conf" <<EOF
local-address=127.0.0.1
local-port=5303
threads=1
daemon=no
write-pid=no
setuid=
setgid=
socket-dir=$W/run/pdns
dnssec=off
quiet=yes
security-poll-suffix=
loglevel=4
forward-zones=allowed.test=127.0.0.1:5310
lua-config-file=$W/conf/pdns/rpz.lua
EOF
echo "rpzFile(\"$W/rpz-peers.zone\", {policyName=\"rpz.local\"})" > "$W/conf/pdns/rpz.lua"
# Knot Resolver 5.6: one kresd process; it does not drop privileges unless
# the config calls user(), so it stays root. -c must be absolute.
cat > "$W/conf/kresd.lua" <<EOF
net.listen('127.0.0.1', 5304, { kind = 'dns' })
net.ipv6 = false
trust_anchors.remove('.')
cache.size = 200 * MB
policy.add(policy.rpz(policy.DENY, '$W/rpz-peers.zone', false))
policy.add(policy.suffix(policy.STUB({'127.0.0.1@5310'}), {todname('allowed.test.')}))
EOF
schild_conf() { # tag udp_sockets list [history_days] -> path
  local f="$W/conf/schild-$1.toml" hist=""
  [ -z "${4:-}" ] || hist=$'\n[history]\ndays = '"$4"
  mkdir -p "$W/state-$1"
  cat > "$f" <<EOF
state_dir = "$W/state-$1"

[server]
listen = ["127.0.0.1:5305"]
allow = ["127.0.0.0/8"]
udp_sockets = $2

[resolver]
mode = "forward"
upstreams = ["127.0.0.1:5310"]
dnssec = false

[local]
nodefault = ["test"]   # allowed.test from NSD, as Unbound's local-zone: "test." nodefault

[admin]
listen = "127.0.0.1:$ADMIN_PORT"

[[feed]]
name = "bench"
type = "domains"
location = "$3"
action = "nxdomain"
refresh_secs = 86400   # no re-pull while measuring
$hist
EOF
  echo "$f"
}

# Figures for the summary table: one "system<TAB>key<TAB>value" line each.
metric() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >> "$W/metrics.tsv"; }
get() { # system key -> value, or nothing
  awk -F'\t' -v s="$1" -v k="$2" '$1 == s && $2 == k { v = $3 } END { if (v != "") print v }' "$W/metrics.tsv"
}
FAILED=""
fail() { # system message
  echo "$1: $2" >&2
  FAILED="$FAILED- $1: $2"$'\n'
}
kb() { awk -v k="$1" '$1 == k":" { print $2 }' "/proc/$2/status" 2>/dev/null || true; }

# 4. Start a server, time spawn -> first NXDOMAIN for the last listed name,
#    then read its memory after 1 s and 11 s. Leaves the pid in $SERVER_PID,
#    the figures in START_S, RSS_MB (+11 s) and HWM_MB. Returns 1 (server
#    stopped, reason noted) when it exits or misses LOAD_DEADLINE.
start() { # name label port cmd...
  local name=$1 label=$2 port=$3; shift 3
  local up t0 t1 pid deadline
  up=$(quiet)
  t0=$(date +%s.%N)
  "$@" > "$W/logs/$name-$label.out" 2>&1 & pid=$!
  SERVER_PID=$pid
  deadline=$((SECONDS + LOAD_DEADLINE))
  until dig +time=1 +tries=1 -p "$port" @127.0.0.1 "$PROBE" A 2>/dev/null | grep -q "status: NXDOMAIN"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      SERVER_PID=""; fail "$name" "exited before answering; see logs/$name-$label.out"; return 1
    fi
    if [ $SECONDS -ge $deadline ]; then
      stop_server; fail "$name" "no NXDOMAIN for $PROBE in ${LOAD_DEADLINE}s"; return 1
    fi
    sleep 0.05
  done
  t1=$(date +%s.%N)
  sleep 1
  local rss1 rss11 hwm cpu
  rss1=$(kb VmRSS "$pid"); rss1=${rss1:-0}
  sleep 10
  rss11=$(kb VmRSS "$pid"); rss11=${rss11:-0}
  hwm=$(kb VmHWM "$pid"); hwm=${hwm:-0}
  cpu=$(awk -v hz="$HZ" '{ sub(/.*\) /, ""); printf "%.2f", ($12 + $13) / hz }' "/proc/$pid/stat")
  START_S=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
  RSS_MB=$((rss11 / 1024)); HWM_MB=$((hwm / 1024))
  printf '| %s | %s | %s | %d | %d | %d | %s | %s |\n' "$name" "$label" "$START_S" \
    $((rss1 / 1024)) "$RSS_MB" "$HWM_MB" "$cpu" "$up" >> "$W/load.md"
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

# p99 of the answered queries' latency in ms, from dnsperf -v lines
# ("> RCODE name type seconds"; "T" = timed out, "I" = interrupted).
p99() { # raw dnsperf -v output
  awk '$1 == ">" && $2 != "T" && $2 != "I" { n[int($NF * 1e6 + 0.5)]++ }
       END { for (k in n) print k, n[k] }' "$1" | sort -n |
    awk '{ v[NR] = $1; c[NR] = $2; t += $2 }
         END { s = 0; for (i = 1; i <= NR; i++) { s += c[i]; if (s >= t * 0.99) { printf "%.3f", v[i] / 1000; exit } } }'
}
# % of the completed queries answered with rcode RC.
rcode_pct() { # dnsperf output, RC
  awk -v rc="$2" '/Response codes:/ { for (i = 1; i < NF; i++) if ($i == rc) { p = $(i + 2); gsub(/[(),%]/, "", p) } }
    END { printf "%.2f", p + 0 }' "$1"
}

# dnsperf for DUR s; CPU of server and dnsperf sampled over [2 s, DUR-1 s].
# Server CPU per answer = server CPU time over that window / (qps x window).
run_perf() { # name pid port qfile clients expected_rcode
  local name=$1 spid=$2 port=$3 q=$4 c=$5 rc=$6 kind
  kind=$(basename "$q" .txt)
  local out="$W/logs/dnsperf-$name-$kind-c$c.log" raw="$W/logs/dnsperf-$name-$kind-c$c.raw"
  local v=(); [ "$LATENCY" = 0 ] || v=(-v)
  local up; up=$(quiet)
  echo "# $up" > "$out"
  echo "# dnsperf -s 127.0.0.1 -p $port -d $(basename "$q") -c $c -q 200 -l $DUR -t 2 ${v[*]}" >> "$out"
  timeout $((DUR + 30)) dnsperf -s 127.0.0.1 -p "$port" -d "$q" -c "$c" -q 200 -l "$DUR" -t 2 "${v[@]}" > "$raw" 2>&1 &
  local tpid=$! dpid=""
  sleep 2
  dpid=$(pgrep -P "$tpid" dnsperf || true)
  local s0 d0 b0 t0 s1 d1 b1 t1
  s0=$(ticks "$spid"); d0=$(ticks "${dpid:-0}"); b0=$(busy); t0=$(date +%s.%N)
  sleep $((DUR - 3))
  s1=$(ticks "$spid"); d1=$(ticks "${dpid:-0}"); b1=$(busy); t1=$(date +%s.%N)
  wait "$tpid" || echo "dnsperf $name $q -c $c: exit $?" >&2
  grep -v '^> ' "$raw" >> "$out" || true
  local p="-"; [ "$LATENCY" = 0 ] || p=$(p99 "$raw")
  rm -f "$raw"
  local qps lost avg rcodes cores secs cpu ok
  qps=$(awk '/Queries per second/ {printf "%.0f", $4}' "$out")
  lost=$(awk '/Queries lost/ {print $3}' "$out")
  avg=$(awk '/Average Latency/ {printf "%.3f", $4 * 1000}' "$out")
  rcodes=$(awk '/Response codes/ {sub(/.*Response codes: */, ""); print}' "$out")
  ok=$(rcode_pct "$out" "$rc")
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
  cores=$(awk -v s="$((s1 - s0))" -v d="$((d1 - d0))" -v b="$((b1 - b0))" -v t="$secs" -v hz="$HZ" \
    'BEGIN { printf "%.2f | %.2f | %.2f", s / hz / t, d / hz / t, (b - s - d) / hz / t }')
  cpu=$(awk -v s="$((s1 - s0))" -v t="$secs" -v hz="$HZ" -v q="${qps:-0}" \
    'BEGIN { if (q > 0) printf "%.2f", s / hz / t / q * 1e6; else print "-" }')
  echo "| $name | $kind | $c | ${qps:--} | ${avg:--} | $p | ${lost:--} | $cpu | $ok | $rcodes | $cores | $up |" >> "$W/perf.md"
  metric "$name" "$kind-c$c-qps" "${qps:--}"
  metric "$name" "$kind-c$c-mean" "${avg:--}"
  metric "$name" "$kind-c$c-p99" "$p"
  metric "$name" "$kind-c$c-lost" "${lost:--}"
  metric "$name" "$kind-c$c-cpu" "$cpu"
  metric "$name" "$kind-c$c-ok" "$ok"
}

# Cache warm-up, the same for every system: one pass over q-allowed with at
# most 50 queries in flight, then 4 s at the measured settings. The first
# pass is there because schild answers SERVFAIL (and remembers it for
# resolver.servfail_ttl_secs) to a client with more than
# resolver.max_inflight_per_client (100) upstream resolutions in flight: 200
# cold misses at once from dnsperf's one address leave names uncached.
perf_suite() { # name pid port
  timeout 60 dnsperf -s 127.0.0.1 -p "$3" -d "$W/q-allowed.txt" -c 10 -q 50 -n 1 -t 2 > /dev/null 2>&1 || true
  timeout 40 dnsperf -s 127.0.0.1 -p "$3" -d "$W/q-allowed.txt" -c 10 -q 200 -l 4 -t 2 > /dev/null 2>&1 || true
  local q c rc
  for q in q-exact q-wild q-allowed; do
    rc=NXDOMAIN; [ $q != q-allowed ] || rc=NOERROR
    for c in $CLIENTS; do run_perf "$1" "$2" "$3" "$W/$q.txt" "$c" $rc; done
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
# The sightings log of a finished run grows to its cap (~0.9 GB): drop it.
drop_sightings() { rm -f "$1"/sightings.jsonl*; }

# 5. Reload under load (schild-u1 on its own copy of the list): dnsperf on
#    the blocked names that stay listed, RELOAD_PCT % of the names replaced
#    by new ones (atomic rename), POST /reload, then the time until the last
#    new name answers NXDOMAIN, the queries lost or not NXDOMAIN during the
#    run, the slowest 1-s qps interval, and VmHWM before/after.
reload_under_load() {
  local d="$W/reload" conf pid
  rm -rf "$d" "$W/state-reload"; mkdir -p "$d"
  cp "$W/domains.txt" "$d/domains.txt"
  conf=$(schild_conf reload 1 "$d/domains.txt")
  start schild-reload start 5305 "$SCHILD" --log "$SCHILD_LOG" serve --config "$conf" || return 0
  pid=$SERVER_PID
  # Every (100/RELOAD_PCT)th name but the probe is replaced by a new one
  # (two hyphens in a label: the generator never makes such a name).
  awk -v step="$(awk -v p="$RELOAD_PCT" 'BEGIN { s = int(100 / p); print (s < 1 ? 1 : s) }')" \
      -v n="$N" -v gone="$d/removed.txt" -v added="$d/added.txt" '
    NR % step == 0 && NR < n { r++; tld = $0; sub(/.*\./, "", tld); new = "rl--" r "--new." tld
                               print $0 > gone; print new > added; print new; next }
    { print }' "$d/domains.txt" > "$d/domains.new"
  local replaced new_probe old_probe
  replaced=$(wc -l < "$d/added.txt")
  new_probe=$(tail -n 1 "$d/added.txt"); old_probe=$(tail -n 1 "$d/removed.txt")
  # The queries: q-exact without the names that go.
  awk 'NR == FNR { gone[$1] = 1; next } !($1 in gone)' "$d/removed.txt" "$W/q-exact.txt" > "$d/q-stay.txt"
  local out="$W/logs/dnsperf-reload.log" up
  local rss0 hwm0 art0 rss_max t0 t1 took="-" rc_old
  art0=$(stat -c %s "$W/state-reload/policy.artifact" 2>/dev/null || echo 0)
  rss0=$(kb VmRSS "$pid"); hwm0=$(kb VmHWM "$pid"); rss0=${rss0:-0}; hwm0=${hwm0:-0}; rss_max=$rss0
  up=$(quiet)
  # dnsperf runs until RELOAD_AFTER s after the new list answers (SIGINT:
  # it stops and prints its statistics), at most until -l.
  local lim=$((RELOAD_AT + RELOAD_DEADLINE + RELOAD_AFTER + 5))
  { echo "# $up"; echo "# dnsperf -s 127.0.0.1 -p 5305 -d q-stay.txt -c 10 -q 200 -l $lim -t 2 -S 1 (SIGINT ${RELOAD_AFTER}s after the new list answers)"; } > "$out"
  timeout $((lim + 30)) dnsperf -s 127.0.0.1 -p 5305 -d "$d/q-stay.txt" -c 10 -q 200 -l "$lim" -t 2 -S 1 >> "$out" 2>&1 &
  local tpid=$!
  sleep "$RELOAD_AT"
  # What the load itself grew (the name history records every name asked):
  # the reload's own cost is the peak above this.
  local rss_at; rss_at=$(kb VmRSS "$pid"); rss_at=${rss_at:-0}
  mv "$d/domains.new" "$d/domains.txt"
  t0=$(date +%s.%N)
  # POST /reload answers when the new list is in place: run it beside the
  # DNS poll, which times the first NXDOMAIN for a new name on its own.
  curl -sS -m "$RELOAD_DEADLINE" -w '\nHTTP %{http_code} after %{time_total} s\n' -X POST \
    "http://127.0.0.1:$ADMIN_PORT/reload" > "$d/reload-response.txt" 2>&1 &
  local cpid=$!
  local deadline=$((SECONDS + RELOAD_DEADLINE)) r
  while :; do
    if dig +time=1 +tries=1 -p 5305 @127.0.0.1 "$new_probe" A 2>/dev/null | grep -q "status: NXDOMAIN"; then
      t1=$(date +%s.%N); took=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }'); break
    fi
    r=$(kb VmRSS "$pid"); [ "${r:-0}" -le "$rss_max" ] || rss_max=$r
    [ $SECONDS -lt $deadline ] || { fail schild-reload "no NXDOMAIN for new name $new_probe ${RELOAD_DEADLINE}s after POST /reload"; break; }
    sleep 0.05
  done
  wait "$cpid" || fail schild-reload "POST /reload: $(tr '\n' ' ' < "$d/reload-response.txt")"
  local post; post=$(awk '/^HTTP / { printf "%s in %.2f s", $2, $4 }' "$d/reload-response.txt")
  rc_old=$(dig +time=2 +tries=1 -p 5305 @127.0.0.1 "$old_probe" A 2>/dev/null | awk '/status:/ { sub(/,$/, "", $6); print $6 }')
  local until=$((SECONDS + RELOAD_AFTER))
  while [ $SECONDS -lt $until ] && kill -0 "$tpid" 2>/dev/null; do
    r=$(kb VmRSS "$pid"); [ "${r:-0}" -le "$rss_max" ] || rss_max=$r
    sleep 0.2
  done
  kill -INT "$tpid" 2>/dev/null || true # timeout passes it on to dnsperf
  wait "$tpid" || echo "dnsperf (reload): exit $?" >&2
  local hwm1 art1 lost rcodes ok maxlat qmin qmed rss1
  hwm1=$(kb VmHWM "$pid"); hwm1=${hwm1:-0}
  # What the reload leaves behind, once the load has stopped.
  sleep 1; rss1=$(kb VmRSS "$pid"); rss1=${rss1:-0}
  art1=$(stat -c %s "$W/state-reload/policy.artifact" 2>/dev/null || echo 0)
  lost=$(awk '/Queries lost/ {print $3}' "$out")
  rcodes=$(awk '/Response codes/ {sub(/.*Response codes: */, ""); print}' "$out")
  ok=$(rcode_pct "$out" NXDOMAIN)
  maxlat=$(awk '/Average Latency/ { m = $0; sub(/.*max /, "", m); sub(/\).*/, "", m); printf "%.1f", m * 1000 }' "$out")
  # -S 1 lines are "unixtime: qps"; the first and last intervals are partial.
  read -r qmin qmed < <(awk '/^[0-9]+\.[0-9]+: [0-9.]+$/ { q[++n] = $2 + 0 }
    END { m = 0; k = 0; for (i = 2; i < n; i++) { v[++k] = q[i]; if (m == 0 || q[i] < m) m = q[i] }
          for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
          printf "%.0f %.0f\n", m, (k ? v[int((k + 1) / 2)] : 0) }' "$out")
  # The refresh's compile runs in a process of its own: its peak, as the
  # server saw it when it reaped it (0: the compile ran in the server).
  local child_peak
  child_peak=$(curl -s -m 5 "http://127.0.0.1:$ADMIN_PORT/metrics" | awk '/^schild_compile_peak_rss_bytes / { printf "%.0f", $2 / 1048576 }')
  stop_server
  trim_log "$W/logs/schild-reload-start.out"; drop_sightings "$W/state-reload"
  {
    echo "| list | names replaced | POST /reload answered | reload -> new name NXDOMAIN s | removed name answers | lost | NXDOMAIN % | rcodes | max latency ms | qps 1-s min / median | VmRSS before MB | VmHWM before MB | VmRSS at reload MB | VmRSS max seen MB | VmHWM after MB | VmRSS after MB | compile process VmHWM MB | artifact old + new MB | uptime before |"
    echo "|---|---:|---|---:|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    echo "| $N | $replaced | ${post:--} | $took | ${rc_old:-no answer} | ${lost:--} | $ok | $rcodes | ${maxlat:--} | $qmin / $qmed | $((rss0 / 1024)) | $((hwm0 / 1024)) | $((rss_at / 1024)) | $((rss_max / 1024)) | $((hwm1 / 1024)) | $((rss1 / 1024)) | ${child_peak:--} | $(awk -v a="$art0" -v b="$art1" 'BEGIN { printf "%.1f + %.1f", a / 1048576, b / 1048576 }') | $up |"
  } > "$W/reload.md"
}

cat > "$W/load.md" <<EOF
| server | start | load s (spawn to first NXDOMAIN for $PROBE) | VmRSS MB +1 s | VmRSS MB +11 s | VmHWM MB | CPU s at +11 s | uptime before |
|---|---|---:|---:|---:|---:|---:|---|
EOF
cat > "$W/perf.md" <<EOF
| server | query file | -c | qps | mean latency ms | p99 ms | lost | server CPU µs/answer | expected rcode % | rcodes | server cores | dnsperf cores | other cores | uptime before |
|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---|
EOF
: > "$W/metrics.tsv"
rm -f "$W/reload.md"

for sys in $SYSTEMS; do
  case $sys in
    schild-u*)
      k=${sys#schild-u}; hd=""
      case $k in *-h0) k=${k%-h0}; hd=0 ;; esac
      tag=${sys#schild-}
      conf=$(schild_conf "$tag" "$k" "$W/domains.txt" $hd)
      # Cold: no artifact in state_dir, so `serve` compiles the feed first;
      # the load time includes that compile.
      rm -rf "$W/state-$tag"; mkdir -p "$W/state-$tag"
      start "$sys" cold 5305 "$SCHILD" --log "$SCHILD_LOG" serve --config "$conf" || continue
      metric "$sys" start_cold "$START_S"
      stop_server
      # Restart: the compiled artifact is on disk (mmap + verify only).
      start "$sys" restart 5305 "$SCHILD" --log "$SCHILD_LOG" serve --config "$conf" || continue
      metric "$sys" start "$START_S"; metric "$sys" rss "$RSS_MB"; metric "$sys" hwm "$HWM_MB"
      perf_suite "$sys" "$SERVER_PID" 5305
      stop_server
      trim_log "$W/logs/$sys-cold.out"; trim_log "$W/logs/$sys-restart.out"
      drop_sightings "$W/state-$tag"
      ;;
    unbound)
      start unbound rpz-load 5301 unbound -d -c "$W/conf/unbound.conf" || continue
      metric unbound start "$START_S"; metric unbound rss "$RSS_MB"; metric unbound hwm "$HWM_MB"
      perf_suite unbound "$SERVER_PID" 5301
      stop_server
      ;;
    pdns)
      rm -rf "$W/run/pdns"; mkdir -p "$W/run/pdns"
      start pdns rpz-load 5303 pdns_recursor --config-dir="$W/conf/pdns" || continue
      # It serves on after an RPZ that failed to load (part of it or none).
      if grep -q 'Exception while loading RPZ' "$W/logs/pdns-rpz-load.out"; then
        stop_server; fail pdns "RPZ did not load: $(grep -m1 'Exception while loading RPZ' "$W/logs/pdns-rpz-load.out")"; continue
      fi
      metric pdns start "$START_S"; metric pdns rss "$RSS_MB"; metric pdns hwm "$HWM_MB"
      perf_suite pdns "$SERVER_PID" 5303
      stop_server
      ;;
    kresd)
      # A fresh rundir: an empty cache (200 MB LMDB file, removed after).
      rm -rf "$W/run/kresd"; mkdir -p "$W/run/kresd"
      start kresd rpz-load 5304 kresd -n -c "$W/conf/kresd.lua" "$W/run/kresd" || continue
      metric kresd start "$START_S"; metric kresd rss "$RSS_MB"; metric kresd hwm "$HWM_MB"
      perf_suite kresd "$SERVER_PID" 5304
      stop_server
      rm -rf "$W/run/kresd"
      ;;
  esac
done
[ "$RELOAD" = 0 ] || reload_under_load
# The ceiling of this box: NSD answering allowed.test itself.
for c in $CLIENTS; do run_perf nsd-ceiling "$NSD_PID" 5310 "$W/q-allowed.txt" "$c" NOERROR; done

# 6. The summary: one row per figure, one column per system, then REF/peer
#    for every peer, REF being the first schild system (schild-u1 by default).
summary() {
  local systems=() peers=() ref="" s
  for s in $SYSTEMS; do
    [ -n "$(get "$s" start)" ] || continue # did not start: no column
    systems+=("$s")
    # schild-uK-h0 (history off) is compared like a peer: REF/it is the
    # history's cost.
    case $s in schild-*-h0) peers+=("$s") ;; schild-*) [ -n "$ref" ] || ref=$s ;; *) peers+=("$s") ;; esac
  done
  [ ${#systems[@]} -gt 0 ] || { echo "(no system ran)"; return; }
  [ -n "$ref" ] || peers=()
  local head="| figure |" rule="|---|"
  for s in "${systems[@]}"; do head+=" $s |"; rule+="---:|"; done
  for s in "${peers[@]}"; do head+=" $ref/$s |"; rule+="---:|"; done
  echo "$head"; echo "$rule"
  row() { # key label ratio(1/0)
    local line="| $2 |" v a b
    for s in "${systems[@]}"; do v=$(get "$s" "$1"); line+=" ${v:--} |"; done
    for s in "${peers[@]}"; do
      a=$(get "$ref" "$1"); b=$(get "$s" "$1")
      if [ "$3" = 1 ]; then
        line+=" $(awk -v a="$a" -v b="$b" 'BEGIN { if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b > 0) printf "%.2f", a / b; else print "-" }') |"
      else line+=" |"; fi
    done
    echo "$line"
  }
  [ -z "$ref" ] || row start_cold "start s, cold (compile first; schild)" 0
  row start "start s (spawn to first NXDOMAIN for the last name)" 1
  row rss "VmRSS MB (+11 s)" 1
  row hwm "VmHWM MB (+11 s)" 1
  local q c
  for q in q-exact q-wild q-allowed; do
    for c in $CLIENTS; do
      row "$q-c$c-cpu" "**$q -c $c: server CPU µs/answer**" 1
      row "$q-c$c-qps" "$q -c $c: qps" 1
      row "$q-c$c-mean" "$q -c $c: mean latency ms" 1
      row "$q-c$c-p99" "$q -c $c: p99 latency ms" 1
      row "$q-c$c-lost" "$q -c $c: lost" 0
      row "$q-c$c-ok" "$q -c $c: expected rcode %" 0
    done
  done
}

{ echo "# dnsperf side by side ($(date -u +%F), N=$N, ${DUR}s runs, -c $CLIENTS, schild --log $SCHILD_LOG)"
  echo
  summary
  echo
  [ -z "$FAILED" ] || { echo "Failed:"; echo; printf '%s' "$FAILED"; echo; }
  if [ -f "$W/reload.md" ]; then
    echo "## Reload under load (schild-u1, dnsperf on q-exact minus the replaced names)"; echo
    cat "$W/reload.md"; echo
  fi
  echo "## Start and memory"; echo; cat "$W/load.md"; echo
  echo "## Every dnsperf run"; echo; cat "$W/perf.md"; } > "$W/results.md"
cat "$W/results.md"
