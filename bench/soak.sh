#!/usr/bin/env bash
# Soak: the daemon under mixed load for DURATION seconds (default 600), with
# a scrape every second; samples its RSS and goroutines and prints whether
# they stay flat. A benchmark, not a CI test (issue 7). Needs root and
# `make build`.
#   DURATION=600 LABELS="comm, pid" IDLE=1m bench/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
duration=${DURATION:-600}
labels=${LABELS:-comm, pid}
idle=${IDLE:-1m}
port=${PORT:-10277}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
gcc -O2 -static -pthread -o "$work/workload" test/workload/workload.c
# pid labels and churn make a new label set per process: idle series must
# leave (1 min here) for memory to stay flat.
printf 'labels: [%s]\ncardinality:\n  idle_timeout: %s\nevents:\n  enabled: true\n' "$labels" "$idle" > "$work/soak.yml"
build/sysobsd --config.file="$work/soak.yml" --web.listen-address=127.0.0.1:$port --log.level=warn &
daemon=$!
for _ in $(seq 50); do curl -sf "127.0.0.1:$port/metrics" >/dev/null && break; sleep 0.2; done

# Mixed load: short-lived processes with failing calls, a churn of forks,
# threads, and a long-lived process; each loop ends with the soak.
end=$((SECONDS + duration))
( while [ $SECONDS -lt $end ]; do "$work/workload" basic soakbasic 2000 20 20; done ) &
( while [ $SECONDS -lt $end ]; do "$work/workload" churn soakchurn 500 5; done ) &
( while [ $SECONDS -lt $end ]; do "$work/workload" threads soakthr 4 20000; done ) &

echo "second,rss_kib,goroutines,series"
first_rss=0; max_rss=0; first_g=0; max_g=0; last_rss=0; last_g=0
while [ $SECONDS -lt $end ]; do
	body=$(curl -sf "127.0.0.1:$port/metrics" || true)
	rss=$(awk '/^VmRSS/ {print $2}' /proc/$daemon/status)
	g=$(printf '%s\n' "$body" | awk '/^go_goroutines / {print $2}')
	series=$(printf '%s\n' "$body" | grep -c '^sysobsd_syscalls_total' || true)
	t=$((duration - (end - SECONDS)))
	if [ "$t" -ge "${next_print:-0}" ]; then echo "$t,$rss,$g,$series"; next_print=$((t + 30)); fi
	[ "$first_rss" -eq 0 ] && [ "$t" -ge 60 ] && first_rss=$rss && first_g=${g%.*}
	[ "$rss" -gt "$max_rss" ] && max_rss=$rss
	[ "${g%.*}" -gt "$max_g" ] && max_g=${g%.*}
	last_rss=$rss; last_g=${g%.*}
	sleep 1
done
echo "rss_kib after 1 min $first_rss, at the end $last_rss, max $max_rss; goroutines after 1 min $first_g, at the end $last_g, max $max_g"
