#!/usr/bin/env bash
# TCP bulk throughput side by side: direct, HAProxy (mode tcp) and portway (TCP listener).
#
# iperf3, one stream, $DURATION seconds per run, targets run in turn for $ROUNDS
# rounds (the machine is shared: interleaving spreads the noise) and the medians
# printed in Gbit/s with each target's ratio to direct and to HAProxy. Proxies
# are pinned to CPU $PROXY_CPU, the iperf3 client and server to CPU $LOAD_CPU.
# portway runs its real TCP proxy (gateway.l4.tcp) with the compiled routing
# table, one worker, as benchmarks/gateway_launcher.py serves it (the default copy
# path); `splice` is the same with PORTWAY_SPLICE=1 (zero-copy, gateway.l4.splice)
# (asyncio transports, bytes through Python).
#
#   benchmarks/tcp.sh                     # defaults: 5 s runs, 3 rounds
#   DURATION=3 ROUNDS=1 benchmarks/tcp.sh # one short run
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PY:-$ROOT/.venv/bin/python}"
DURATION="${DURATION:-5}"
ROUNDS="${ROUNDS:-3}"
TARGETS="${TARGETS:-direct haproxy portway splice}"
PROXY_CPU="${PROXY_CPU:-0}"
LOAD_CPU="${LOAD_CPU:-1}"
UP=18200 HAP=18201 PW=18202 PWS=18203

missing=()
for bin in haproxy iperf3; do command -v "$bin" >/dev/null || missing+=("$bin"); done
if ((${#missing[@]})); then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

cat >"$WORK/haproxy.cfg" <<HAP
global
  nbthread 1
  maxconn 4096
defaults
  mode tcp
  timeout connect 2s
  timeout client 60s
  timeout server 60s
frontend fe
  bind 127.0.0.1:$HAP
  default_backend be
backend be
  server s1 127.0.0.1:$UP
HAP

for pair in "portway.yaml $PW" "splice.yaml $PWS"; do
set -- $pair
cat >"$WORK/$1" <<YAML
listeners:
  - {name: tcp, protocol: TCP, port: $2}
backends:
  - name: iperf
    endpoints: [{address: 127.0.0.1, port: $UP}]
routes:
  - name: bulk
    listeners: [tcp]
    rules:
      - backendRefs: [{name: iperf}]
YAML
done

wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }

taskset -c "$LOAD_CPU" iperf3 -s -p "$UP" >/dev/null 2>&1 & PIDS+=($!)
taskset -c "$PROXY_CPU" haproxy -db -f "$WORK/haproxy.cfg" & PIDS+=($!)
taskset -c "$PROXY_CPU" "$PY" "$ROOT/benchmarks/gateway_launcher.py" "$WORK/portway.yaml" >"$WORK/pw.out" & PIDS+=($!)
PORTWAY_SPLICE=1 taskset -c "$PROXY_CPU" "$PY" "$ROOT/benchmarks/gateway_launcher.py" "$WORK/splice.yaml" >"$WORK/pws.out" & PIDS+=($!)
for p in $UP $HAP $PW $PWS; do wait_port "$p"; done
sleep 0.5  # iperf3 -s takes one client at a time: let the port probes finish
declare -A PORT=([direct]=$UP [haproxy]=$HAP [portway]=$PW [splice]=$PWS)

median() { tr ' ' '\n' | awk 'NF' | sort -g | awk '{a[NR]=$1} END {if (NR==0) print "-"; else if (NR%2) print a[(NR+1)/2]; else printf "%.2f\n", (a[NR/2]+a[NR/2+1])/2}'; }
declare -A GBPS
for r in $(seq "$ROUNDS"); do
  for t in $TARGETS; do
    bps=$(taskset -c "$LOAD_CPU" iperf3 -c 127.0.0.1 -p "${PORT[$t]}" -t "$DURATION" -J \
      | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"])')
    g=$(awk -v b="$bps" 'BEGIN {printf "%.2f", b / 1e9}')
    GBPS[$t]+=" $g"
    echo "round $r $t: $g Gbit/s" >&2
    sleep 0.3
  done
done

printf '\niperf3 one stream, %ss x %s rounds (medians), proxies on CPU %s, iperf3 on CPU %s (%s)\n' \
  "$DURATION" "$ROUNDS" "$PROXY_CPU" "$LOAD_CPU" "$(date -u +%FT%TZ)"
printf '%-8s %9s %9s %9s\n' target gbit/s /direct /haproxy
declare -A M
for t in $TARGETS; do M[$t]=$(median <<<"${GBPS[$t]}"); done
for t in $TARGETS; do
  d=$(awk -v a="${M[$t]}" -v b="${M[direct]:-0}" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "-"}')
  h=$(awk -v a="${M[$t]}" -v b="${M[haproxy]:-0}" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "-"}')
  printf '%-8s %9s %9s %9s\n' "$t" "${M[$t]}" "$d" "$h"
done
