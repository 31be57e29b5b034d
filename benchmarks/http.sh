#!/usr/bin/env bash
# HTTP proxy throughput side by side: direct upstream, HAProxy, nginx, the bare
# Python proxy (benchmarks/bare_proxy.py: the ceiling for asyncio + httptools +
# uvloop here) and portway.
#
# Same wrk load (loopback) against each; every proxy pinned to CPU $PROXY_CPU,
# wrk and the nginx upstream to $LOAD_CPU. Targets are run in turn, $ROUNDS
# rounds (the machine is shared: interleaving spreads the noise), and the
# medians printed: rps, p99, CPU microseconds per request of each proxy split
# user/sys (ticks from /proc/<pid>/stat over the run, divided by the requests
# wrk completed), and upstream connections closed during the run (TIME-WAIT
# sockets on the upstream port: 0 when keep-alive reuse works).
# Each proxy sets one request header, so all do a header rewrite; portway runs
# with routing (compiled table) and metrics (runtime observer) on.
#
#   benchmarks/http.sh            # defaults: -t1 -c50 -d10s, 3 rounds
#   DURATION=5s CONNS=100 ROUNDS=5 benchmarks/http.sh
#   TARGETS="haproxy portway" benchmarks/http.sh
#   BEFORE=/tmp/old-checkout benchmarks/http.sh   # adds target "before": another
#       installed checkout of portway (its own .venv), same config, side by side
#   TARGETS="haproxy native nativepy portway" benchmarks/http.sh   # the native relay
#       probe (benchmarks/native_relay.py): C sockets and framing, calling nothing
#       (native) or the routing core once per request (nativepy); never by default
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PY:-$ROOT/.venv/bin/python}"
DURATION="${DURATION:-10s}"
CONNS="${CONNS:-50}"
ROUNDS="${ROUNDS:-3}"
TARGETS="${TARGETS:-direct haproxy nginx bare portway}"
BEFORE="${BEFORE:-}"
if [[ -n $BEFORE && $TARGETS != *before* ]]; then TARGETS="$TARGETS before"; fi
PROXY_CPU="${PROXY_CPU:-0}"
LOAD_CPU="${LOAD_CPU:-1}"
UP=18100 HAP=18101 NGX=18102 PW=18103 BARE=18104 PWB=18105 NAT=18106 NATPY=18107

missing=()
for bin in haproxy nginx wrk; do command -v "$bin" >/dev/null || missing+=("$bin"); done
if ((${#missing[@]})); then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

cat >"$WORK/upstream.conf" <<NGINX
daemon off; master_process off; worker_processes 1; error_log /dev/null; pid $WORK/up.pid;
events { worker_connections 4096; }
http { access_log off;
  server { listen 127.0.0.1:$UP; keepalive_requests 1000000; keepalive_timeout 300s; location / { return 200 "ok"; } } }
NGINX

cat >"$WORK/proxy.conf" <<NGINX
daemon off; master_process off; worker_processes 1; error_log /dev/null; pid $WORK/ngx.pid;
events { worker_connections 4096; }
http { access_log off;
  upstream app { server 127.0.0.1:$UP; keepalive 64; keepalive_requests 1000000; }
  server { listen 127.0.0.1:$NGX; keepalive_requests 1000000;
    location / { proxy_pass http://app; proxy_http_version 1.1;
      proxy_set_header Connection ""; proxy_set_header X-Bench 1; } } }
NGINX

cat >"$WORK/haproxy.cfg" <<HAP
global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend fe
  bind 127.0.0.1:$HAP
  http-request set-header X-Bench 1
  default_backend be
backend be
  server s1 127.0.0.1:$UP
HAP

cat >"$WORK/portway.yaml" <<YAML
listeners:
  - {name: web, protocol: HTTP, port: $PW}
backends:
  - name: app
    endpoints: [{address: 127.0.0.1, port: $UP}]
routes:
  - name: bench
    rules:
      - matches: [{path: {type: PathPrefix, value: /}}]
        backendRefs: [{name: app}]
        filters:
          requestHeaders: {set: [{name: X-Bench, value: "1"}]}
YAML

sed "s/port: $PW}/port: $PWB}/" "$WORK/portway.yaml" >"$WORK/portway-before.yaml"

declare -A PID
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }

taskset -c "$LOAD_CPU" nginx -c "$WORK/upstream.conf" & PIDS+=($!)
taskset -c "$PROXY_CPU" haproxy -db -f "$WORK/haproxy.cfg" & PID[haproxy]=$!; PIDS+=($!)
taskset -c "$PROXY_CPU" nginx -c "$WORK/proxy.conf" & PID[nginx]=$!; PIDS+=($!)
taskset -c "$PROXY_CPU" "$PY" "$ROOT/benchmarks/bare_proxy.py" "$BARE" "$UP" >"$WORK/bare.out" & PID[bare]=$!; PIDS+=($!)
taskset -c "$PROXY_CPU" "$PY" "$ROOT/benchmarks/gateway_launcher.py" --observer "${PW_OBSERVER:-metrics}" "$WORK/portway.yaml" >"$WORK/pw.out" & PID[portway]=$!; PIDS+=($!)
if [[ -n $BEFORE ]]; then
  taskset -c "$PROXY_CPU" "$BEFORE/.venv/bin/python" "$BEFORE/benchmarks/gateway_launcher.py" \
    --observer "${PW_OBSERVER:-metrics}" "$WORK/portway-before.yaml" >"$WORK/pwb.out" & PID[before]=$!; PIDS+=($!)
fi
NATIVE=()
if [[ " $TARGETS " == *" native "* ]]; then
  taskset -c "$PROXY_CPU" "$PY" "$ROOT/benchmarks/native_relay.py" "$NAT" "$UP" --decide none \
    >"$WORK/nat.out" & PID[native]=$!; PIDS+=($!); NATIVE+=("$NAT")
fi
if [[ " $TARGETS " == *" nativepy "* ]]; then
  taskset -c "$PROXY_CPU" "$PY" "$ROOT/benchmarks/native_relay.py" "$NATPY" "$UP" --decide route \
    >"$WORK/natpy.out" & PID[nativepy]=$!; PIDS+=($!); NATIVE+=("$NATPY")
fi
for p in $UP $HAP $NGX $BARE $PW ${BEFORE:+$PWB} "${NATIVE[@]}"; do wait_port "$p"; done
declare -A PORT=([direct]=$UP [haproxy]=$HAP [nginx]=$NGX [bare]=$BARE [portway]=$PW [before]=$PWB \
  [native]=$NAT [nativepy]=$NATPY)

TCK=$(getconf CLK_TCK)
ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }
closed_upstream() { ss -tanH state time-wait "( sport = :$UP or dport = :$UP )" | wc -l; }
to_us() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); print v+0} else if (v ~ /ms$/) {sub(/ms$/,"",v); print v*1000} else {sub(/s$/,"",v); print v*1e6}}' <<<"$1"; }
median() { tr ' ' '\n' | awk 'NF' | sort -g | awk '{a[NR]=$1} END {if (NR==0) print "-"; else if (NR%2) print a[(NR+1)/2]; else printf "%.1f\n", (a[NR/2]+a[NR/2+1])/2}'; }

declare -A RPS P99 USR SYS CLOSED
run() { # name
  local name=$1 port=${PORT[$1]} pid=${PID[$1]:-}
  local u0=0 s0=0 u1=0 s1=0 c0 c1
  if [[ -n $pid ]]; then read -r u0 s0 < <(ticks "$pid"); fi
  c0=$(closed_upstream)
  local out; out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"$DURATION" --latency "http://127.0.0.1:$port/")
  c1=$(closed_upstream)
  if [[ -n $pid ]]; then read -r u1 s1 < <(ticks "$pid"); fi
  local reqs; reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  RPS[$name]+=" $(awk '/Requests\/sec/ {print $2}' <<<"$out")"
  P99[$name]+=" $(to_us "$(awk '$1=="99%" {print $2}' <<<"$out")")"
  CLOSED[$name]+=" $((c1 > c0 ? c1 - c0 : 0))"
  if [[ -n $pid ]]; then
    USR[$name]+=" $(awk -v t=$((u1 - u0)) -v k="$TCK" -v n="$reqs" 'BEGIN {printf "%.1f", t / k * 1e6 / n}')"
    SYS[$name]+=" $(awk -v t=$((s1 - s0)) -v k="$TCK" -v n="$reqs" 'BEGIN {printf "%.1f", t / k * 1e6 / n}')"
  fi
  grep -q "Non-2xx" <<<"$out" && echo "WARNING: $name answered non-2xx: $(grep Non-2xx <<<"$out")" >&2
  echo "round $r $name: $(awk '/Requests\/sec/ {print $2}' <<<"$out") rps" >&2
  return 0
}

for t in $TARGETS; do taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d2s "http://127.0.0.1:${PORT[$t]}/" >/dev/null; done  # warm-up
for r in $(seq "$ROUNDS"); do for t in $TARGETS; do run "$t"; done; done

printf '\nwrk -t1 -c%s -d%s, %s rounds (medians), proxies on CPU %s, load on CPU %s (%s)\n' "$CONNS" "$DURATION" "$ROUNDS" "$PROXY_CPU" "$LOAD_CPU" "$(date -u +%FT%TZ)"
printf '%-8s %10s %9s %9s %9s %9s %6s %7s %7s\n' target rps p99_us usr_us sys_us cpu_us rps/hap p99/hap up_closed
declare -A M_RPS M_P99
for n in $TARGETS; do M_RPS[$n]=$(median <<<"${RPS[$n]}"); M_P99[$n]=$(median <<<"${P99[$n]}"); done
for n in $TARGETS; do
  u=$(median <<<"${USR[$n]:-}"); s=$(median <<<"${SYS[$n]:-}")
  c=$([[ $u == - ]] && echo - || awk -v a="$u" -v b="$s" 'BEGIN {printf "%.1f", a + b}')
  ratio=$(awk -v a="${M_RPS[$n]}" -v b="${M_RPS[haproxy]:-0}" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "-"}')
  pratio=$(awk -v a="${M_P99[$n]}" -v b="${M_P99[haproxy]:-0}" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "-"}')
  printf '%-8s %10s %9s %9s %9s %9s %6s %7s %7s\n' "$n" "${M_RPS[$n]}" "${M_P99[$n]}" "$u" "$s" "$c" "$ratio" "$pratio" "$(median <<<"${CLOSED[$n]}")"
done
