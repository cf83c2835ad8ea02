#!/usr/bin/env bash
# Where a traced syscall's time goes: the getppid loop under `perf record`
# (cpu-clock samples), untraced and under the floor, the clock-only floor and
# sysobsd; prints each kernel and user function's share as ns per call.
# Sampling slows every call (a timer interrupt per sample, costly in a VM):
# compare the variants' shares with one another, not with bench/run.sh's ns.
# Run it where no other program is attached to sys_enter/sys_exit (another
# sysobsd, a tracer): every variant would pay for that one too.
#
#   bench/profile.sh                     all four variants
#   VARIANTS="floor sysobsd" N=5000000 bench/profile.sh
#
# Needs root, perf (Debian: linux-perf), and bench/run.sh's binaries
# (bench/.build/loop and floor; build/sysobsd).
set -euo pipefail
cd "$(dirname "$0")/.."
VARIANTS=${VARIANTS:-none floor floor-clock sysobsd}
N=${N:-5000000}
FREQ=${FREQ:-20000}
TOP=${TOP:-25}
work=$(mktemp -d)
pid=
cleanup() {
	if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi
	rm -rf "$work"
}
trap cleanup EXIT

[ "$(id -u)" -eq 0 ] || { echo "profile: needs root (BPF programs, perf)" >&2; exit 1; }
command -v perf >/dev/null || { echo "profile: perf is missing: apt-get install linux-perf" >&2; exit 1; }
for f in bench/.build/loop bench/.build/floor build/sysobsd; do
	[ -x "$f" ] || { echo "profile: $f is missing: run bench/run.sh (SMOKE=1 will do) first" >&2; exit 1; }
done

# start VARIANT: attaches it and waits until it is ready; sets pid.
start() {
	local log="$work/$1.log"
	case $1 in
	none) pid= ;;
	floor) bench/.build/floor >"$log" 2>&1 & pid=$! ;;
	floor-clock) bench/.build/floor --clock >"$log" 2>&1 & pid=$! ;;
	sysobsd) build/sysobsd --web.listen-address=127.0.0.1:19199 --log.level=warn >"$log" 2>&1 & pid=$! ;;
	*) echo "profile: unknown variant $1 (none floor floor-clock sysobsd)" >&2; exit 1 ;;
	esac
	for _ in $(seq 300); do
		case $1 in
		none) return ;;
		sysobsd) curl -sf -o /dev/null 127.0.0.1:19199/metrics && return ;;
		*) grep -q attached "$log" && return ;;
		esac
		sleep 0.1
	done
	echo "profile: $1 did not start: $(tail -1 "$log")" >&2
	exit 1
}

for v in $VARIANTS; do
	start "$v"
	sleep 0.5
	out=$(perf record -q -e cpu-clock -F "$FREQ" -o "$work/perf.data" -- nice -n -10 bench/.build/loop getppid "$N" 2>/dev/null)
	if [ -n "$pid" ]; then kill "$pid"; wait "$pid" 2>/dev/null || true; pid=; fi
	ns=$(sed -n 's/^ns_per_op=\([0-9.]*\).*/\1/p' <<<"$out")
	echo "== $v: $ns ns per call while sampled"
	perf report -i "$work/perf.data" --no-children --sort sym --stdio -g none 2>/dev/null |
		awk -v ns="$ns" -v top="$TOP" '/%/ && n < top { p = $1; sub("%", "", p); $1 = ""; printf "%7.1f ns %s\n", p * ns / 100, $0; n++ }'
done
