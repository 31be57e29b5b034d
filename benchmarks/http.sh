#!/usr/bin/env bash
# HTTP proxy throughput side by side: direct upstream, HAProxy, nginx, portway.
#
# Same wrk load (loopback) against each; every proxy pinned to CPU $PROXY_CPU,
# wrk and the nginx upstream to $LOAD_CPU. Prints rps, p99, portway/HAProxy
# ratio and CPU microseconds per request of each proxy (user+sys ticks from
# /proc/<pid>/stat over the run, divided by the requests wrk completed).
# Each proxy sets one request header, so all do a header rewrite; portway runs
# with routing (compiled table) and metrics (runtime observer) on.
#
#   benchmarks/http.sh            # defaults: -t1 -c50 -d10s
#   DURATION=5s CONNS=100 benchmarks/http.sh
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PY:-$ROOT/.venv/bin/python}"
DURATION="${DURATION:-10s}"
CONNS="${CONNS:-50}"
PROXY_CPU="${PROXY_CPU:-0}"
LOAD_CPU="${LOAD_CPU:-1}"
UP=18100 HAP=18101 NGX=18102 PW=18103

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
  server { listen 127.0.0.1:$UP; keepalive_requests 100000; location / { return 200 "ok"; } } }
NGINX

cat >"$WORK/proxy.conf" <<NGINX
daemon off; master_process off; worker_processes 1; error_log /dev/null; pid $WORK/ngx.pid;
events { worker_connections 4096; }
http { access_log off;
  upstream app { server 127.0.0.1:$UP; keepalive 64; keepalive_requests 100000; }
  server { listen 127.0.0.1:$NGX; keepalive_requests 100000;
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

wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }

taskset -c "$LOAD_CPU" nginx -c "$WORK/upstream.conf" & PIDS+=($!)
taskset -c "$PROXY_CPU" haproxy -db -f "$WORK/haproxy.cfg" & HAP_PID=$!; PIDS+=($HAP_PID)
taskset -c "$PROXY_CPU" nginx -c "$WORK/proxy.conf" & NGX_PID=$!; PIDS+=($NGX_PID)
taskset -c "$PROXY_CPU" "$PY" "$ROOT/benchmarks/gateway_launcher.py" --observer "${PW_OBSERVER:-metrics}" "$WORK/portway.yaml" >"$WORK/pw.out" & PW_PID=$!; PIDS+=($PW_PID)
for p in $UP $HAP $NGX $PW; do wait_port "$p"; done

TCK=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

declare -A RPS P99 US
run() { # name port pid
  local name=$1 port=$2 pid=${3:-}
  taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d2s "http://127.0.0.1:$port/" >/dev/null  # warm-up
  local before=0; [[ -n $pid ]] && before=$(cpu_ticks "$pid")
  local out; out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"$DURATION" --latency "http://127.0.0.1:$port/")
  local after=0; [[ -n $pid ]] && after=$(cpu_ticks "$pid")
  local reqs; reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  RPS[$name]=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  P99[$name]=$(awk '$1=="99%" {print $2}' <<<"$out")
  if [[ -n $pid ]]; then
    US[$name]=$(awk -v t=$((after - before)) -v k="$TCK" -v n="$reqs" 'BEGIN {printf "%.1f", t / k * 1e6 / n}')
  else US[$name]="-"; fi
  grep -q "Non-2xx" <<<"$out" && echo "WARNING: $name answered non-2xx: $(grep Non-2xx <<<"$out")" >&2
  return 0
}

run direct $UP
run haproxy $HAP $HAP_PID
run nginx $NGX $NGX_PID
run portway $PW $PW_PID

printf '\nwrk -t1 -c%s -d%s, proxies on CPU %s, load on CPU %s (%s)\n' "$CONNS" "$DURATION" "$PROXY_CPU" "$LOAD_CPU" "$(date -u +%FT%TZ)"
printf '%-9s %12s %10s %14s\n' target rps p99 "cpu us/req"
for n in direct haproxy nginx portway; do printf '%-9s %12s %10s %14s\n' "$n" "${RPS[$n]}" "${P99[$n]}" "${US[$n]}"; done
awk -v a="${RPS[portway]}" -v b="${RPS[haproxy]}" 'BEGIN {printf "portway / haproxy rps: %.2f\n", a / b}'
