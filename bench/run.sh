#!/usr/bin/env bash
# sysobsd's benchmarks (`make bench`): what the daemon adds per syscall, side
# by side with empty BPF programs (the floor) and the other tools, in paired,
# interleaved runs; the scale runs; the Go benchmarks. As root, on Debian 12.
#
#   bench/run.sh               full run (about 15 minutes), report on stdout
#   WRITE=1 bench/run.sh       the same, and writes its sections of docs/benchmarks.md
#   SMOKE=1 bench/run.sh       one short round of a subset (CI; under a minute)
#
# The report starts with the machine (bench/machine.sh: CPU, PCID, PTI,
# mitigations, clocksource, untraced getppid).
#
# Knobs (environment):
#   ROUNDS=5        rounds of the overhead runs (each runs every variant once)
#   ITERS_SCALE=1   multiplies the loops' iterations (3M getppid, 2M writes, 150k lock handoffs)
#   VARIANTS=...    overhead variants to run, e.g. "floor sysobsd" (default: all)
#   NICE=-10        nice value of the measured loops and the tracers
#   LIVE=10000 SHORT=100000 SUSTAIN=30s SCRAPE_EVERY=15s   scale runs
#   TRICKLE=20s TRICKLE_RATE=10   with the live processes up, short-lived ones exit at a trickle
#   INPLACE_ROUNDS=40 INPLACE_INSTANCES=2   the in-place runs (bench/cmd/inplace)
#   SKIP_INPLACE=1 SKIP_OVERHEAD=1 SKIP_SCALE=1 SKIP_GOBENCH=1   leave a part out
#   SYSOBSD=build/sysobsd   the daemon binary (the default is rebuilt with `make build` first)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH

SMOKE=${SMOKE:-0}
WRITE=${WRITE:-0}
SYSOBSD=${SYSOBSD:-build/sysobsd}
NICE=${NICE:--10}
OUT=bench/.build
if [ "$SMOKE" = 1 ]; then
	ROUNDS=${ROUNDS:-1}
	ITERS_SCALE=${ITERS_SCALE:-0.05}
	VARIANTS=${VARIANTS:-floor floor-exit floor-clock sysobsd sysobsd-nolat strace}
	LIVE=${LIVE:-200} SHORT=${SHORT:-2000} SUSTAIN=${SUSTAIN:-2s} SCRAPE_EVERY=${SCRAPE_EVERY:-1s} TRICKLE=${TRICKLE:-2s}
	SCRAPES=2 BIG_STATS=0 QUIET_WAIT=0s BENCHTIME=${BENCHTIME:-200x} PROG_STATS=false
	INPLACE_ROUNDS=${INPLACE_ROUNDS:-2} INPLACE_INSTANCES=${INPLACE_INSTANCES:-1} INPLACE_ITERS=2000
else
	ROUNDS=${ROUNDS:-5}
	ITERS_SCALE=${ITERS_SCALE:-1}
	VARIANTS=${VARIANTS:-}
	LIVE=${LIVE:-10000} SHORT=${SHORT:-100000} SUSTAIN=${SUSTAIN:-30s} SCRAPE_EVERY=${SCRAPE_EVERY:-15s} TRICKLE=${TRICKLE:-20s}
	SCRAPES=5 BIG_STATS=${BIG_STATS:-262144} QUIET_WAIT=${QUIET_WAIT:-30s} BENCHTIME=${BENCHTIME:-1s} PROG_STATS=true
	INPLACE_ROUNDS=${INPLACE_ROUNDS:-40} INPLACE_INSTANCES=${INPLACE_INSTANCES:-2} INPLACE_ITERS=50000
fi

log() { printf '%s bench: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "$*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "needs root: it loads BPF programs and runs tracers"
command -v go >/dev/null || die "Go ≥1.26 is needed at /usr/local/go (or on PATH)"
started=$(date +%s)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- Debian packages: the loop needs a static libc; the comparisons need
# the tools. Only what is missing is installed.
packages=(gcc libc6-dev bpftool coreutils)
if [ "$SMOKE" = 1 ]; then
	packages+=(strace)
else
	packages+=(strace bpftrace libbpf-tools linux-perf)
fi
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# bpftrace, syscount and perf trace attach to the raw_syscalls tracepoints,
# which need tracefs; some machines do not mount it.
mounted_tracefs=0
if [ ! -d /sys/kernel/tracing/events/raw_syscalls ] && grep -qw tracefs /proc/filesystems; then
	mount -t tracefs nodev /sys/kernel/tracing && mounted_tracefs=1
fi
cleanup() {
	if [ "$mounted_tracefs" = 1 ]; then umount /sys/kernel/tracing 2>/dev/null || true; fi
}
trap cleanup EXIT

# ---- build
mkdir -p "$OUT"
if [ "$SYSOBSD" = build/sysobsd ]; then
	log "building $SYSOBSD" # never measure a stale binary
	make build >/dev/null
fi
[ -x "$SYSOBSD" ] || die "no daemon binary at $SYSOBSD"
log "building the loop, the floor and the harness"
gcc -O2 -Wall -Wextra -static -pthread -o "$OUT/loop" bench/loop/loop.c
CGO_ENABLED=0 go build -o "$OUT/floor" ./bench/cmd/floor
go build -o "$OUT/overhead" ./bench/cmd/overhead
go build -o "$OUT/inplace" ./bench/cmd/inplace
go build -o "$OUT/scale" ./bench/scale

report="$OUT/report"
rm -rf "$report" && mkdir -p "$report"

# ---- the machine: PCID, PTI, clocksource, untraced getppid (bench/machine.sh)
log "recording the machine"
if [ "$SMOKE" = 1 ]; then
	MACHINE_RUNS=3 MACHINE_ITERS=100000 NICE=$NICE bench/machine.sh "$OUT/loop" >"$report/machine.md"
else
	NICE=$NICE bench/machine.sh "$OUT/loop" >"$report/machine.md"
fi

# ---- per-call cost with the hooks switched in place
if [ "${SKIP_INPLACE:-0}" != 1 ]; then
	log "in place: $INPLACE_ROUNDS rounds, $INPLACE_INSTANCES instance(s) of each variant"
	"$OUT/inplace" -loop "$OUT/loop" -nice "$NICE" -rounds "$INPLACE_ROUNDS" -instances "$INPLACE_INSTANCES" \
		-iters "$INPLACE_ITERS" -raw "$report/inplace.json" -out "$report/inplace.md"
	log "in place, failing calls: $INPLACE_ROUNDS rounds"
	"$OUT/inplace" -loop "$OUT/loop" -nice "$NICE" -rounds "$INPLACE_ROUNDS" -instances "$INPLACE_INSTANCES" \
		-iters "$INPLACE_ITERS" -call eagain -variants "floor-exit floor-clock sysobsd sysobsd-nolat" \
		-raw "$report/inplace-eagain.json" -out "$report/inplace-eagain.md"
fi

# ---- overhead per syscall
if [ "${SKIP_OVERHEAD:-0}" != 1 ]; then
	log "overhead: $ROUNDS round(s), variants: ${VARIANTS:-all}"
	nice -n "$NICE" "$OUT/overhead" -loop "$OUT/loop" -floor "$OUT/floor" -sysobsd "$SYSOBSD" \
		-rounds "$ROUNDS" -scale "$ITERS_SCALE" -variants "$VARIANTS" -quiet-wait "$QUIET_WAIT" \
		-prog-stats="$PROG_STATS" -perf-div 20 -raw "$report/overhead.json" -out "$report/overhead.md"
fi

# ---- scale
if [ "${SKIP_SCALE:-0}" != 1 ]; then
	log "scale: $LIVE long-lived, $SHORT short-lived processes, $SUSTAIN sustained"
	"$OUT/scale" -sysobsd "$SYSOBSD" -loop "$OUT/loop" -live "$LIVE" -short "$SHORT" \
		-sustain "$SUSTAIN" -scrape-every "$SCRAPE_EVERY" -scrapes "$SCRAPES" \
		-trickle "$TRICKLE" -trickle-rate "${TRICKLE_RATE:-10}" \
		-big-stats-entries "$BIG_STATS" -out "$report/scale.md"
fi

# ---- Go benchmarks: the scrape path, name tables, record decoding
if [ "${SKIP_GOBENCH:-0}" != 1 ]; then
	log "go test -bench (benchtime $BENCHTIME)"
	go test -run '^$' -bench . -benchmem -benchtime "$BENCHTIME" \
		./internal/tally/ ./internal/loader/ ./internal/metrics/ ./internal/syscalls/ ./bench/ >"$report/gobench.txt"
fi

took=$(($(date +%s) - started))
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
log "done in ${took}s"

# ---- the report
command_line="bench/run.sh"
[ "$SMOKE" = 1 ] && command_line="SMOKE=1 $command_line"
[ "$WRITE" = 1 ] && command_line="WRITE=1 $command_line"
version() { "$@" 2>&1 | head -1 || true; }
{
	echo "# Benchmarks"
	echo
	echo "What sysobsd costs per syscall, beside empty BPF programs (the floor) and the other tools,"
	echo "and how the daemon behaves at scale. Produced by \`make bench\` (\`bench/run.sh\`); every number"
	echo "below is from the one run described here, so ratios are between runs made side by side."
	echo
	echo "## This run"
	echo
	echo "| | |"
	echo "|---|---|"
	echo "| command | \`$command_line\` (ROUNDS=$ROUNDS ITERS_SCALE=$ITERS_SCALE NICE=$NICE LIVE=$LIVE SHORT=$SHORT SUSTAIN=$SUSTAIN SCRAPE_EVERY=$SCRAPE_EVERY TRICKLE=$TRICKLE${VARIANTS:+ VARIANTS=\"$VARIANTS\"}) |"
	echo "| date | $(date -u '+%Y-%m-%d %H:%M UTC'), ${took} s |"
	echo "| kernel | $(uname -r) ($(uname -m)) |"
	echo "| CPU | $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) |"
	echo "| load average (1, 5, 15 min) | at start $load_start, at end $load_end |"
	echo "| sysobsd | $("$SYSOBSD" --version 2>&1 | head -1) |"
	echo "| tools | $(version bpftrace --version); libbpf-tools $(dpkg-query -W -f='${Version}' libbpf-tools 2>/dev/null || echo -); $(version strace -V); $(version perf version); $(go version) |"
	echo
	echo "### The machine"
	echo
	echo "Recorded by \`bench/machine.sh\` before the runs."
	echo
	cat "$report/machine.md"
	echo
	echo "## Per-call cost, hooks switched in place"
	echo
	cat <<'EOF'
`bench/cmd/inplace` loads each variant's programs once per instance, 2 by default (sysobsd's as the daemon
loads them: the embedded default config and its filter, without the tally engine), and switches
their syscall hooks on and off in place between short getppid runs of `bench/loop`; each traced
run is paired with the untraced runs just before and after it, every instance once per round in
a random order. On a shared VM whose speed drifts by 20% within a minute, the rounds of the next
section, which start a daemon around each block of runs, carry about ±25% in their ratios; these
carry a few percent. Intervals are 90% bootstrap intervals over rounds (a round's runs resampled
together, so a ratio's interval is of paired runs); a target is met only if its whole interval
is on its side. Two loads of the same build have differed by up to 60 ns (their maps on other
pages): a row pools its instances and lists each one's median. An interval covers one run's
noise, not the host's: on the machine of 2026-12-07 the same build's ratio to the clock reads
moved between 1.2x and 1.6x within an hour (see "Issue 21: the hooks switched in place"). The
peers (bpftrace, syscount) cannot be switched in place: their ratios are the next section's.

EOF
	if [ -f "$report/inplace.md" ]; then cat "$report/inplace.md"; else echo "(not run)"; echo; fi
	echo "### Failing calls"
	echo
	cat <<'EOF'
The same, with each call a one-byte read from an empty non-blocking pipe that fails with EAGAIN
(`bench/loop eagain`): a failed call is also counted by its errno, in a slot of the same table.

EOF
	if [ -f "$report/inplace-eagain.md" ]; then cat "$report/inplace-eagain.md"; else echo "(not run)"; echo; fi
	echo "## Overhead per syscall"
	echo
	cat <<'EOF'
Each loop (`bench/loop/loop.c`, static, raw syscall(2), timed with the vDSO clock) runs untraced
and under each tracer, in rounds of U V1 U V2 … Vk U, the variant order rotated every round. A
traced run is compared with the mean of the untraced runs just before and after it: "ns added"
is the difference in wall time per call, "slowdown" the ratio; median over the rounds, spread
min–max. "added, CPU-time basis" is the same from the loop's own CPU time, which leaves out time
the loop was not on a CPU (other load on the machine; but also a ptrace stop, so it understates
strace and perf trace). The system-wide tracers (the floor, sysobsd, bpftrace, syscount) are
started before and stopped after the three loops of their block, and measured while each loop
runs: CPU from /proc/PID/task/*/schedstat (ns; /proc/PID/stat's 10 ms ticks are too coarse for
sub-second runs), memory from VmRSS / VmHWM. strace and perf trace wrap the loop (with
fewer iterations: per-call cost is what is compared) and are measured as the loop's parent.
BPF programs run in the calling thread, so their cost shows in the loop's time, not in the
tracer's CPU.

EOF
	if [ -f "$report/overhead.md" ]; then cat "$report/overhead.md"; else echo "(not run)"; echo; fi
	cat <<'EOF'
Notes on the variants:

- The floor is `bench/floor` (`bench/cmd/floor`): empty `tp_btf/sys_enter` and `tp_btf/sys_exit`
  programs, the hooks sysobsd uses. Attaching any program to them moves every thread of the host
  to the kernel's slower syscall path; what sysobsd adds beyond the floor is its own cost.
- bpftrace runs `bench/tracers/sysobsd.bt` (calls and ns per pid and syscall, errors per pid,
  syscall and errno, a latency histogram per syscall) on `tracepoint:raw_syscalls`, as a bpftrace
  user would write it, with `BPFTRACE_MAP_KEYS_MAX=65536`.
- `syscount -L` is libbpf-tools' (Debian package `libbpf-tools`; bcc's `syscount-bpfcc` from
  `bpfcc-tools` is the same tool with a Python front end and is not run). It counts per syscall,
  not per process.
- strace and perf trace stop or wake their tracer at every call, so they run the loops with 200x
  (strace) and 20x (perf trace) fewer iterations; the cost per call is what is compared.
- The lock loop hands a futex lock from thread to thread in strict turns (every op makes a
  FUTEX_WAKE and usually a FUTEX_WAIT, and a context switch): an ordinary mutex on a busy 2-CPU
  machine mostly runs one thread per time slice and rarely calls futex at all. Its time per op is
  dominated by the context switches, so its added cost is noisy and small relative to the op.
- bpftrace, syscount and perf trace need tracefs; the harness mounts it at /sys/kernel/tracing
  when it is missing (and unmounts it at the end).

EOF
	echo "## Scale"
	echo
	if [ -f "$report/scale.md" ]; then cat "$report/scale.md"; else echo "(not run)"; echo; fi
	echo "## Go benchmarks"
	echo
	echo "\`go test -run '^\$' -bench . -benchmem -benchtime $BENCHTIME ./internal/tally/ ./internal/loader/ ./internal/metrics/ ./internal/syscalls/ ./bench/\`"
	echo "(as root). The scrape path of a large host, in its steps: BenchmarkReadStats is the kernel's"
	echo "batch read of 140,000 per-process entries, BenchmarkSnapshot the tally's attribution of"
	echo "100,000 entries of 10,000 processes, BenchmarkCollect one scrape's collection of 10,000"
	echo "series (21,000 samples; the series known from the scrape before), BenchmarkScrape the whole"
	echo "/metrics response (collection, the registry's checks and sort, text encoding)."
	echo "A fold: BenchmarkLookupStats looks up 1,400 entries by key in the same map,"
	echo "BenchmarkFold is the tally's work to fold one exited process of that host."
	echo "BenchmarkDecodeLifecycle is one ring-buffer record."
	echo
	echo '```'
	if [ -f "$report/gobench.txt" ]; then grep -E '^(Benchmark|goos|goarch|cpu|pkg)' "$report/gobench.txt"; else echo "(not run)"; fi
	echo '```'
} >"$report/benchmarks.md"

cat "$report/benchmarks.md"
# WRITE=1 replaces the sections this report has (its preamble, "This run",
# the in-place runs, "Overhead per syscall", "Scale", "Go benchmarks") and keeps the others in
# place: bench/servers.sh's "Real servers" and the dated notes of changes.
if [ "$WRITE" = 1 ]; then
	awk -v report="$report/benchmarks.md" '
		BEGIN {
			name = "(preamble)"
			while ((getline l < report) > 0) {
				if (l ~ /^## /) { name = l; order[++n] = name }
				new[name] = new[name] l "\n"
			}
			printf "%s", new["(preamble)"]; done["(preamble)"] = 1
			skip = 1 # the old preamble
		}
		/^## / {
			skip = ($0 in new)
			if (skip) { printf "%s", new[$0]; done[$0] = 1 }
		}
		!skip { print }
		END { for (i = 1; i <= n; i++) if (!done[order[i]]) printf "%s", new[order[i]] }
	' docs/benchmarks.md >"$report/docs-benchmarks.md"
	cp "$report/docs-benchmarks.md" docs/benchmarks.md
	log "wrote docs/benchmarks.md (its other sections kept)"
fi
