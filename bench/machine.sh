#!/usr/bin/env bash
# The machine a benchmark ran on, as a markdown block for its report: what
# makes a syscall cost 85 ns on one machine and 980 on another (PCID, PTI,
# the other mitigations on the syscall path, the clocksource, a hypervisor)
# and the untraced getppid cost itself, measured with bench/loop.
# bench/run.sh and bench/servers.sh print it at the top of their reports.
#
#   bench/machine.sh LOOP      LOOP: a built bench/loop (gcc -static bench/loop/loop.c)
#
# Knobs (environment): MACHINE_RUNS=5 runs of MACHINE_ITERS=1000000 getppid
# calls (the median is reported); NICE=-10, the loop's nice value, as run.sh's.
set -euo pipefail

loop=${1:?usage: bench/machine.sh LOOP}
runs=${MACHINE_RUNS:-5}
iters=${MACHINE_ITERS:-1000000}
nice=${NICE:--10}

flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2-) "
has_flag() { case "$flags" in *" $1 "*) echo yes ;; *) echo no ;; esac; }
vuln() { cat "/sys/devices/system/cpu/vulnerabilities/$1" 2>/dev/null || echo "(not reported)"; }
# Kernel parameters that change the syscall path or the clock.
cmdline_params() {
	tr ' ' '\n' </proc/cmdline | grep -E '^(mitigations|pti|nopti|spectre_v2|retbleed|spec_rstack_overflow|clocksource|tsc|nosmt|isolcpus|nohz_full)(=|$)' |
		tr '\n' ' ' | sed 's/ $//'
}

virt() {
	local v
	v="hypervisor flag: $(has_flag hypervisor)"
	if command -v systemd-detect-virt >/dev/null; then
		v+="; systemd-detect-virt: vm $(systemd-detect-virt --vm 2>/dev/null || true), container $(systemd-detect-virt --container 2>/dev/null || true)"
	fi
	echo "$v"
}

# Other programs on the syscall tracepoints make the untraced calls slower.
foreign_links() {
	if command -v bpftool >/dev/null; then
		bpftool link show -j 2>/dev/null | grep -oE '"tp_name":"sys_(enter|exit)"' | wc -l
	else
		echo "? (no bpftool)"
	fi
}

getppid_ns() {
	local i ns=()
	for ((i = 0; i < runs; i++)); do
		ns+=("$(nice -n "$nice" "$loop" getppid "$iters" | sed -n 's/^ns_per_op=\([0-9.]*\).*/\1/p')")
	done
	printf '%s\n' "${ns[@]}" | sort -g | awk '{v[NR] = $1}
		END {m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
			printf "**%.0f ns per call** (median of %d runs of %d calls, %.0f–%.0f)", m, NR, '"$iters"', v[1], v[NR]}'
}

cpu_model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
sockets=$(grep 'physical id' /proc/cpuinfo | sort -u | wc -l)
echo "| | |"
echo "|---|---|"
echo "| CPU | ${cpu_model:-unknown}, $(nproc) CPUs online (${sockets} socket(s)), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) |"
echo "| kernel | $(uname -r) ($(uname -m)); boot parameters: \`$(cmdline_params)\` |"
echo "| PCID | $(has_flag pcid) (invpcid: $(has_flag invpcid)); without it every syscall under PTI flushes the TLB |"
echo "| PTI | \`pti\` flag: $(has_flag pti); meltdown: $(vuln meltdown) |"
echo "| spectre_v2 | $(vuln spectre_v2) |"
echo "| retbleed | $(vuln retbleed) |"
echo "| spec_rstack_overflow | $(vuln spec_rstack_overflow) |"
echo "| clocksource | $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource 2>/dev/null || echo unknown) (available: $(sed 's/ *$//' /sys/devices/system/clocksource/clocksource0/available_clocksource 2>/dev/null || echo unknown)) |"
echo "| virtualization | $(virt) |"
echo "| untraced getppid | $(getppid_ns) (\`bench/loop\`, nice $nice; other BPF links on sys_enter/sys_exit meanwhile: $(foreign_links)) |"
