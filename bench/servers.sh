#!/usr/bin/env bash
# Real servers, measured as their users would: nginx (1 worker, a small
# static file) under wrk, and PostgreSQL under pgbench, both on loopback,
# untraced and under each tracer, in paired rounds. What each tracer costs is
# the throughput lost against the untraced runs beside it, and what it does to
# the latency percentiles. As root, on Debian 12; installs what is missing.
#
#   bench/servers.sh            full run (ROUNDS=6 DURATION=6: about 30 minutes)
#   WRITE=1 bench/servers.sh    the same, and puts the report into docs/benchmarks.md
#                               as its "Real servers" section
#   SMOKE=1 bench/servers.sh    one short round, untraced and sysobsd only (CI)
#   INPLACE=1 bench/servers.sh  the variants bench/cmd/inplace can switch (the floors and
#                               sysobsd's), each loaded once, their hooks switched on and off
#                               between short runs (ROUNDS=20 DURATION=2: about 15 minutes);
#                               with WRITE=1 its own section, "Real servers, hooks switched in place"
#
# Each round runs U V1 U V2 … Vk U (U: untraced), the variant order rotated
# every round; a traced run is compared with the mean of the untraced runs
# just before and after it. Tracers are started, and ready, before their run's
# load starts, and stopped after it.
#
# Knobs (environment):
#   ROUNDS=6 DURATION=6      rounds, seconds of load per run
#   SERVERS="nginx pgbench"  which servers
#   VARIANTS=...             traced variants (default: all of floor floor-clock
#                            sysobsd sysobsd-exact sysobsd-nolat syscount bpftrace
#                            perf strace)
#   WRK_THREADS=1 WRK_CONNECTIONS=32
#   PG_SCALE=10 PG_CLIENTS=4 PG_JOBS=2 PG_MODE=select   (select: pgbench -S; tpcb: the default script)
#   NICE=-10                 nice value of the servers, the load generators and the tracers
#                            (as bench/run.sh's loops: other work on a shared machine disturbs less)
#   SYSOBSD=path             the daemon binary (default: `make build`, then build/sysobsd);
#                            copied to bench/.build/sysobsd-servers so one binary is measured
#   ALT=NAME=PATH,...        other sysobsd builds (an experiment), run with the default config
#                            as variants sysobsd-NAME added to VARIANTS (overhead's -alt)
#   INPLACE_ALT=NAME=PATH[:VARIANT],...
#                            with INPLACE=1: other builds' inplace binaries (inplace's -alt)
set -euo pipefail
set -m # tracers in their own process groups: a Ctrl-C reaches this script, whose trap stops them in order
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH

SMOKE=${SMOKE:-0}
WRITE=${WRITE:-0}
INPLACE=${INPLACE:-0}
if [ "$SMOKE" = 1 ]; then
	ROUNDS=${ROUNDS:-1} DURATION=${DURATION:-2} VARIANTS=${VARIANTS:-sysobsd} WARMUP=1
	[ "$INPLACE" = 1 ] && ROUNDS=2
elif [ "$INPLACE" = 1 ]; then
	ROUNDS=${ROUNDS:-20} DURATION=${DURATION:-2} WARMUP=${WARMUP:-6}
	VARIANTS=${VARIANTS:-floor floor-clock sysobsd sysobsd-exact sysobsd-nolat}
else
	ROUNDS=${ROUNDS:-6} DURATION=${DURATION:-6} WARMUP=${WARMUP:-$DURATION}
	VARIANTS=${VARIANTS:-floor floor-clock sysobsd sysobsd-exact sysobsd-nolat syscount bpftrace perf strace}
fi
SERVERS=${SERVERS:-nginx pgbench}
ALT=${ALT:-}
if [ "$INPLACE" = 1 ] && [ -n "$ALT" ]; then
	echo "ALT: not with INPLACE=1; INPLACE_ALT takes other builds' inplace binaries" >&2
	exit 2
fi
declare -A alt_bin
for a in ${ALT//,/ }; do
	name=${a%%=*} path=${a#*=}
	case $name in "" | nolat | exact | "$a")
		echo "ALT: want NAME=PATH,... with a NAME other than nolat and exact, got $a" >&2
		exit 2
		;;
	esac
	[ -x "$path" ] || { echo "ALT: $name: $path is not an executable" >&2; exit 2; }
	alt_bin[sysobsd-$name]=$path
	case " $VARIANTS " in *" sysobsd-$name "*) ;; *) VARIANTS="$VARIANTS sysobsd-$name" ;; esac
done
WRK_THREADS=${WRK_THREADS:-1} WRK_CONNECTIONS=${WRK_CONNECTIONS:-32}
PG_SCALE=${PG_SCALE:-10} PG_CLIENTS=${PG_CLIENTS:-4} PG_JOBS=${PG_JOBS:-2} PG_MODE=${PG_MODE:-select}
SETTLE=${SETTLE:-1}
NICE=${NICE:--10}
OUT=bench/.build
RESULTS=$OUT/servers # runs.tsv, machine.md, run.md, report.md
[ "$SMOKE" = 1 ] && RESULTS=$OUT/servers-smoke # a smoke run leaves a full run's results alone
BIN=$OUT/sysobsd-servers

log() { printf '%s servers: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
	log "$*"
	exit 1
}

[ "$(id -u)" -eq 0 ] || die "needs root: it loads BPF programs, runs tracers and starts servers"
command -v go >/dev/null || die "Go ≥1.26 is needed at /usr/local/go (or on PATH)"
started=$(date +%s)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- Debian packages: only what is missing.
want_variant() { case " $VARIANTS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
want_server() { case " $SERVERS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
missing=()
need() { # need PACKAGE FILE: install PACKAGE unless FILE (a path or a command) is there
	if ! { [ -e "$2" ] || command -v "$2" >/dev/null; }; then missing+=("$1"); fi
}
need gcc gcc
need libc6-dev /usr/lib/x86_64-linux-gnu/libc.a
[ "$(uname -m)" = x86_64 ] || need libc6-dev /usr/include/stdio.h
need curl curl
need bpftool bpftool
if want_server nginx; then
	need nginx-light nginx
	need wrk wrk
fi
if want_server pgbench; then
	compgen -G '/usr/lib/postgresql/*/bin/pgbench' >/dev/null || missing+=(postgresql postgresql-contrib)
fi
want_variant bpftrace && need bpftrace bpftrace
want_variant syscount && need libbpf-tools syscount
want_variant perf && need linux-perf perf
want_variant strace && need strace strace
if [ ${#missing[@]} -gt 0 ]; then
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# ---- everything this script starts, stopped at exit (also on Ctrl-C)
WORK=$(mktemp -d /tmp/sysobsd-servers.XXXXXX)
chmod 755 "$WORK" # nginx's worker (nobody) and postgres read below it
tracer_pid="" tracer_name="" load_pid="" nginx_pid="" pg_data="" pg_bin="" mounted_tracefs=0
stop_pid() { # stop_pid PID SIGNAL: signal, wait up to 30 s, then SIGKILL
	local pid=$1 sig=$2 i
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
	kill -s "$sig" "$pid" 2>/dev/null || true
	for ((i = 0; i < 300; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$pid" 2>/dev/null && kill -s KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null || true
}
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	# The tracer first: strace must detach before the servers go.
	[ -n "$tracer_pid" ] && stop_pid "$tracer_pid" "$(stop_signal "$tracer_name")"
	[ -n "$load_pid" ] && stop_pid "$load_pid" TERM
	[ -n "$nginx_pid" ] && stop_pid "$nginx_pid" QUIT
	if [ -n "$pg_data" ] && [ -f "$pg_data/postmaster.pid" ]; then
		runuser -u postgres -- "$pg_bin/pg_ctl" stop -D "$pg_data" -m immediate -w >/dev/null 2>&1 || true
	fi
	if [ "$mounted_tracefs" = 1 ]; then umount /sys/kernel/tracing 2>/dev/null || true; fi
	rm -rf "$WORK"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# bpftrace, syscount and perf trace attach to the raw_syscalls tracepoints,
# which need tracefs; some machines do not mount it.
if [ ! -d /sys/kernel/tracing/events/raw_syscalls ] && grep -qw tracefs /proc/filesystems; then
	mount -t tracefs nodev /sys/kernel/tracing && mounted_tracefs=1
fi

free_port() {
	local p
	for p in $(shuf -i 20000-60000 -n 100); do
		[ -z "$(ss -Htln "sport = :$p")" ] && echo "$p" && return
	done
	die "no free port"
}

# ---- build: one daemon binary for the whole run
mkdir -p "$OUT" "$RESULTS"
sysobsd_given=${SYSOBSD:-}
if [ -z "$sysobsd_given" ]; then
	log "building build/sysobsd"
	make build >/dev/null
	SYSOBSD=build/sysobsd
fi
[ -x "$SYSOBSD" ] || die "no daemon binary at $SYSOBSD"
cp "$SYSOBSD" "$BIN.tmp" && mv "$BIN.tmp" "$BIN"
log "building the loop, the floor and the report"
gcc -O2 -Wall -Wextra -static -pthread -o "$OUT/loop" bench/loop/loop.c
CGO_ENABLED=0 go build -o "$OUT/floor" ./bench/cmd/floor
go build -o "$OUT/servers-report" ./bench/servers
go build -o "$OUT/inplace" ./bench/cmd/inplace

log "recording the machine"
if [ "$SMOKE" = 1 ]; then
	MACHINE_RUNS=3 MACHINE_ITERS=100000 bench/machine.sh "$OUT/loop" >"$RESULTS/machine.md"
else
	bench/machine.sh "$OUT/loop" >"$RESULTS/machine.md"
fi
# From here on everything this script starts inherits the nice value.
renice -n "$NICE" -p $$ >/dev/null

# ---- the variants
metrics_port=$(free_port)
printf 'latency: false\n' >"$WORK/no-latency.yml"
printf 'latency: true\n' >"$WORK/exact.yml"
# tracer_command VARIANT: sets cmd (argv) and ready (a line its output
# carries once attached; "http" for /metrics answering, "" for a pause).
tracer_command() {
	local listen="--web.listen-address=127.0.0.1:$metrics_port"
	case $1 in
	floor) cmd=("$OUT/floor") ready=attached ;;
	floor-clock) cmd=("$OUT/floor" --clock) ready=attached ;;
	sysobsd) cmd=("$BIN" "$listen" --log.level=warn) ready=http ;;
	sysobsd-nolat) cmd=("$BIN" "$listen" --log.level=warn "--config.file=$WORK/no-latency.yml") ready=http ;;
	sysobsd-exact) cmd=("$BIN" "$listen" --log.level=warn "--config.file=$WORK/exact.yml") ready=http ;;
	sysobsd-*) # an ALT build
		[ -n "${alt_bin[$1]:-}" ] || die "unknown variant $1"
		cmd=("${alt_bin[$1]}" "$listen" --log.level=warn) ready=http
		;;
	syscount) cmd=(stdbuf -oL syscount -L) ready="Tracing syscalls" ;;
	bpftrace) cmd=(env BPFTRACE_MAP_KEYS_MAX=65536 bpftrace bench/tracers/sysobsd.bt) ready="sysobsd-bench: ready" ;;
	# System-wide: perf trace follows every process, like the BPF tools. It
	# prints nothing until it stops, so a pause stands for "ready".
	perf) cmd=(perf trace -a -s -o "$WORK/perf.out") ready="" ;;
	# Attached to the server's processes (-f: and what they start: the
	# backends pgbench's clients connect to), as an SRE would attach it.
	strace) cmd=(strace -f -c -o "$WORK/strace.out") ready=strace ;;
	*) die "unknown variant $1" ;;
	esac
}
stop_signal() {
	case $1 in
	floor | floor-clock | sysobsd | sysobsd-*) echo TERM ;;
	*) echo INT ;;
	esac
}
# Links on sys_enter/sys_exit that are not the variant's own: another tracer
# on the host makes every syscall slower, the untraced runs' too.
foreign_links() {
	local n ours=0
	n=$(bpftool link show -j 2>/dev/null | grep -oE '"tp_name":"sys_(enter|exit)"' | wc -l)
	case $1 in
	sysobsd-nolat) ours=1 ;;
	floor | floor-clock | sysobsd | sysobsd-*) ours=2 ;; # sysobsd-exact and ALT builds too
	syscount) ours=$n ;; # libbpf-tools attaches by raw tracepoint: its links may show
	esac
	echo $((n > ours ? n - ours : 0))
}

start_tracer() { # start_tracer VARIANT SERVER_PIDS...
	local v=$1 i
	shift
	tracer_command "$v"
	if [ "$v" = strace ]; then
		for i in "$@"; do cmd+=(-p "$i"); done
	fi
	: >"$WORK/$v.log" # the tracer's own redirection may come after the first look
	"${cmd[@]}" >"$WORK/$v.log" 2>&1 &
	tracer_pid=$! tracer_name=$v
	for ((i = 0; i < 600; i++)); do
		kill -0 "$tracer_pid" 2>/dev/null || die "$v exited before it was ready: $(tail -c 2000 "$WORK/$v.log")"
		case $ready in
		http) curl -fsS -o /dev/null "http://127.0.0.1:$metrics_port/metrics" 2>/dev/null && break ;;
		strace) [ "$(grep -c 'attached' "$WORK/$v.log")" -ge $# ] && break ;;
		"") [ "$i" -ge 30 ] && break ;;
		*) grep -qF "$ready" "$WORK/$v.log" && break ;;
		esac
		sleep 0.1
	done
	[ "$i" -lt 600 ] || die "$v not ready after 60 s: $(tail -c 2000 "$WORK/$v.log")"
	sleep "$SETTLE"
}
stop_tracer() {
	stop_pid "$tracer_pid" "$(stop_signal "$tracer_name")"
	tracer_pid=""
}

# ---- nginx: 1 worker, a small static file, Debian's default access log
nginx_port=$(free_port)
start_nginx() {
	local d=$WORK/nginx
	mkdir -p "$d/www" "$d/tmp"
	head -c 1024 /dev/zero | tr '\0' 'x' >"$d/www/index.html"
	chmod -R a+rX "$d"
	cat >"$d/nginx.conf" <<EOF
worker_processes 1;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 1024; }
http {
	include /etc/nginx/mime.types;
	sendfile on;
	tcp_nopush on;
	access_log $d/access.log;
	client_body_temp_path $d/tmp;
	proxy_temp_path $d/tmp;
	fastcgi_temp_path $d/tmp;
	uwsgi_temp_path $d/tmp;
	scgi_temp_path $d/tmp;
	server {
		listen 127.0.0.1:$nginx_port;
		root $d/www;
	}
}
EOF
	nginx -p "$d" -c "$d/nginx.conf" -g 'daemon off;' &
	nginx_pid=$!
	local i
	for ((i = 0; i < 100; i++)); do
		curl -fsS -o /dev/null "http://127.0.0.1:$nginx_port/index.html" 2>/dev/null && return
		sleep 0.1
	done
	die "nginx did not start: $(cat "$d/error.log")"
}
nginx_pids() { echo "$nginx_pid" $(pgrep -P "$nginx_pid"); }
# nginx_load SECONDS, pg_load SECONDS: run the load in the background (so
# that the trap can stop it) and write "throughput p50_ms p99_ms avg_ms
# errors" to $WORK/result.
nginx_load() {
	local out=$WORK/wrk.out
	wrk -t "$WRK_THREADS" -c "$WRK_CONNECTIONS" -d "${1}s" --latency "http://127.0.0.1:$nginx_port/index.html" >"$out" 2>&1 &
	load_pid=$!
	wait "$load_pid" || die "wrk failed: $(cat "$out")"
	load_pid=""
	: >"$WORK/nginx/access.log" # O_APPEND: nginx goes on writing at the new end
	awk 'function ms(v) {
			if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v
		}
		$1 == "Latency" && $2 != "Distribution" {avg = ms($2)}
		$1 == "50%" {p50 = ms($2)} $1 == "99%" {p99 = ms($2)}
		/^Requests\/sec:/ {rps = $2}
		/Non-2xx|Socket errors/ {err = err $0 ";"}
		END {gsub(/[ \t]+/, "_", err); printf "%s %s %s %s %s\n", rps, p50, p99, avg, (err == "" ? "-" : err)}' "$out" >"$WORK/result"
}

# ---- PostgreSQL: a throwaway cluster on loopback, pgbench's tables
pg_port=$(free_port)
start_pg() {
	pg_bin=$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d | sort -V | tail -1)
	local d=$WORK/pg
	mkdir -p "$d" && chown postgres: "$d"
	pg_data=$d/data
	runuser -u postgres -- "$pg_bin/initdb" -D "$pg_data" --auth=trust -U postgres >"$d/initdb.log" 2>&1 ||
		die "initdb failed: $(cat "$d/initdb.log")"
	runuser -u postgres -- "$pg_bin/pg_ctl" start -D "$pg_data" -w -l "$d/server.log" \
		-o "-c listen_addresses=127.0.0.1 -p $pg_port -k $d -c max_connections=20" >/dev/null ||
		die "postgres did not start: $(cat "$d/server.log")"
	log "pgbench -i -s $PG_SCALE"
	"$pg_bin/pgbench" -i -q -s "$PG_SCALE" -h 127.0.0.1 -p "$pg_port" -U postgres postgres >"$d/init.log" 2>&1 ||
		die "pgbench -i failed: $(cat "$d/init.log")"
}
pg_pids() {
	local pm
	pm=$(head -1 "$pg_data/postmaster.pid")
	echo "$pm" $(pgrep -P "$pm")
}
pg_load() {
	local out=$WORK/pgbench.out logs=$WORK/pglog mode=()
	[ "$PG_MODE" = select ] && mode=(-S)
	rm -rf "$logs" && mkdir -p "$logs"
	(cd "$logs" && exec "$pg_bin/pgbench" -n "${mode[@]}" -c "$PG_CLIENTS" -j "$PG_JOBS" -T "$1" -l --log-prefix=tx \
		-h 127.0.0.1 -p "$pg_port" -U postgres postgres) >"$out" 2>&1 &
	load_pid=$!
	wait "$load_pid" || die "pgbench failed: $(cat "$out")"
	load_pid=""
	# Per-transaction logs: "client tx latency_us script epoch_s epoch_us".
	local tps failed
	tps=$(sed -n 's/^tps = \([0-9.]*\) (without.*/\1/p' "$out")
	failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$out")
	cat "$logs"/tx.* | awk '{print $3}' | sort -n | awk -v tps="$tps" -v failed="${failed:-0}" \
		'{v[NR] = $1; s += $1}
		END {printf "%s %.3f %.3f %.3f %s\n", tps, v[int(NR * 0.5) + 1] / 1000, v[int(NR * 0.99) + 1] / 1000, s / NR / 1000,
			(failed > 0 ? failed "_failed_transactions" : "-")}' >"$WORK/result"
}

# ---- rounds
runs=$RESULTS/runs.tsv
printf 'server\tround\tseq\tvariant\tthroughput\tp50_ms\tp99_ms\tavg_ms\terrors\tforeign\tload1\n' >"$runs"
seq_no=0
measure() { # measure SERVER ROUND VARIANT
	local server=$1 round=$2 v=$3 foreign thr p50 p99 avg err
	foreign=$(foreign_links "$v")
	case $server in
	nginx) nginx_load "$DURATION" ;;
	pgbench) pg_load "$DURATION" ;;
	esac
	read -r thr p50 p99 avg err <"$WORK/result"
	seq_no=$((seq_no + 1))
	printf '%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n' "$server" "$round" "$seq_no" "$v" "$thr" "$p50" "$p99" "$avg" \
		"$err" "$foreign" "$(cut -d' ' -f1 /proc/loadavg)" >>"$runs"
	log "round $round $server $v: $thr/s, p50 $p50 ms, p99 $p99 ms${foreign:+, other links $foreign}"
}
# inplace_runs SERVER: the in-place runs (INPLACE=1) against the running server.
inplace_runs() {
	local server=$1 cmd parse select=""
	case $server in
	nginx)
		cmd="wrk -t $WRK_THREADS -c $WRK_CONNECTIONS -d ${DURATION}s http://127.0.0.1:$nginx_port/index.html"
		cmd="$cmd && : >$WORK/nginx/access.log" parse=wrk # O_APPEND: nginx goes on at the new end
		;;
	pgbench)
		[ "$PG_MODE" = select ] && select=-S
		cmd="$pg_bin/pgbench -n $select -c $PG_CLIENTS -j $PG_JOBS -T $DURATION -h 127.0.0.1 -p $pg_port -U postgres postgres"
		parse=pgbench
		;;
	esac
	log "$server: in place, $ROUNDS rounds of ${DURATION}s runs, variants: $VARIANTS"
	# -nice 0: this script and so its children already run at $NICE.
	"$OUT/inplace" -workload "$cmd" -parse "$parse" -variants "$VARIANTS" -rounds "$ROUNDS" \
		-instances "${INPLACE_INSTANCES:-1}" -nice 0 ${INPLACE_ALT:+-alt "$INPLACE_ALT"} -raw "$RESULTS/inplace-$server.json" \
		-out "$RESULTS/inplace-$server.md" || die "$server: the in-place runs failed"
}
run_server() { # run_server SERVER
	local server=$1 r v i vars order pids
	read -ra vars <<<"$VARIANTS"
	case $server in
	nginx) start_nginx ;;
	pgbench) start_pg ;;
	*) die "unknown server $server" ;;
	esac
	log "$server: warm-up ${WARMUP}s"
	case $server in
	nginx) nginx_load "$WARMUP" ;;
	pgbench) pg_load "$WARMUP" ;;
	esac
	if [ "$INPLACE" = 1 ]; then
		inplace_runs "$server"
	else
		for ((r = 1; r <= ROUNDS; r++)); do
			order=()
			for ((i = 0; i < ${#vars[@]}; i++)); do order+=("${vars[(i + r - 1) % ${#vars[@]}]}"); done
			measure "$server" "$r" untraced
			for v in "${order[@]}"; do
				case $server in
				nginx) pids=$(nginx_pids) ;;
				pgbench) pids=$(pg_pids) ;;
				esac
				# shellcheck disable=SC2086 # the pids are words
				start_tracer "$v" $pids
				measure "$server" "$r" "$v"
				stop_tracer
				measure "$server" "$r" untraced
			done
		done
	fi
	case $server in
	nginx) stop_pid "$nginx_pid" QUIT && nginx_pid="" ;;
	pgbench) runuser -u postgres -- "$pg_bin/pg_ctl" stop -D "$pg_data" -m fast -w >/dev/null && pg_data="" ;;
	esac
}

for s in $SERVERS; do
	log "$s: $ROUNDS round(s) of ${DURATION}s, variants: $VARIANTS"
	run_server "$s"
done
took=$(($(date +%s) - started))
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
log "done in ${took}s"

# ---- the report
command_line="bench/servers.sh"
[ "$SMOKE" = 1 ] && command_line="SMOKE=1 $command_line"
[ "$INPLACE" = 1 ] && command_line="INPLACE=1 $command_line"
[ -n "$sysobsd_given" ] && command_line="SYSOBSD=$sysobsd_given $command_line"
[ -n "$ALT" ] && command_line="ALT=\"$ALT\" $command_line"
[ -n "${INPLACE_ALT:-}" ] && command_line="INPLACE_ALT=\"$INPLACE_ALT\" $command_line"
version() { "$@" 2>&1 | head -1 || true; }
pg_version=$([ -n "$pg_bin" ] && "$pg_bin/postgres" --version || echo -)
libbpf_tools=$(dpkg-query -W -f='${Version}' libbpf-tools 2>/dev/null || echo -)
cat >"$RESULTS/run.md" <<EOF
| | |
|---|---|
| command | \`$command_line\` (ROUNDS=$ROUNDS DURATION=$DURATION NICE=$NICE SERVERS="$SERVERS" WRK_THREADS=$WRK_THREADS WRK_CONNECTIONS=$WRK_CONNECTIONS PG_SCALE=$PG_SCALE PG_CLIENTS=$PG_CLIENTS PG_JOBS=$PG_JOBS PG_MODE=$PG_MODE VARIANTS="$VARIANTS") |
| date | $(date -u '+%Y-%m-%d %H:%M UTC'), ${took} s |
| load average (1, 5, 15 min) | at start $load_start, at end $load_end |
| sysobsd | $("$BIN" --version 2>&1 | head -1) |
| servers | $(version nginx -v); $pg_version; $(version wrk -v | sed 's/ Copyright.*//') |
| tools | $(version bpftrace --version); libbpf-tools $libbpf_tools; $(version strace -V); $(version perf version) |
EOF
pg_what="select-only (\`pgbench -S\`)"
[ "$PG_MODE" = select ] || pg_what="TPC-B-like (pgbench's default script)"
nginx_title="nginx: 1 worker, a 1 KiB static file, access log on; \`wrk -t $WRK_THREADS -c $WRK_CONNECTIONS --latency\`, ${DURATION} s runs"
pg_title="PostgreSQL: pgbench $pg_what, scale $PG_SCALE, $PG_CLIENTS clients, $PG_JOBS threads, TCP on loopback, ${DURATION} s runs"
section="## Real servers"
if [ "$INPLACE" = 1 ]; then
	section="## Real servers, hooks switched in place"
	{
		echo "$section"
		echo
		cat <<'EOF'
The servers of the section above, measured as `bench/run.sh`'s in-place runs measure the loops:
each variant's programs loaded once (`bench/cmd/inplace`; sysobsd's as the daemon loads them, without
the tally engine), their hooks switched on and off between short load runs, each traced run paired
with the untraced runs just before and after it, every variant once per round in a random order.
The cost is the throughput lost against those neighbours; intervals are 90% bootstrap intervals
over rounds. Only what can be switched in place is here; the other tools are in the section above.

EOF
		echo "### This run"
		echo
		cat "$RESULTS/run.md"
		echo
		echo "The machine (\`bench/machine.sh\`, recorded at the start of the run):"
		echo
		cat "$RESULTS/machine.md"
		echo
		for s in $SERVERS; do
			case $s in nginx) echo "### $nginx_title" ;; pgbench) echo "### $pg_title" ;; esac
			echo
			cat "$RESULTS/inplace-$s.md"
		done
	} >"$RESULTS/report.md"
else
	"$OUT/servers-report" -runs "$runs" -machine "$RESULTS/machine.md" -run "$RESULTS/run.md" \
		-server "nginx=$nginx_title" -server "pgbench=$pg_title" >"$RESULTS/report.md"
fi
cat "$RESULTS/report.md"
if [ "$WRITE" = 1 ]; then
	# Replace this report's section (up to the next "## ") or append it.
	awk -v report="$RESULTS/report.md" -v section="$section" '
		$0 == section {skip = 1; while ((getline l < report) > 0) print l; done = 1; next}
		skip && /^## / {skip = 0}
		!skip {print}
		END {if (!done) {print ""; while ((getline l < report) > 0) print l}}' docs/benchmarks.md >"$WORK/benchmarks.md"
	cp "$WORK/benchmarks.md" docs/benchmarks.md
	log "wrote the \"${section#\#\# }\" section of docs/benchmarks.md"
fi
