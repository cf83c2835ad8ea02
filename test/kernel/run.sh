#!/usr/bin/env bash
# make kernel-test: boots Debian 12's 6.1 cloud kernel under qemu (TCG, no
# KVM) with an initramfs of busybox, the static daemon, the load test of this
# directory, the integration tests and their workload; test/kernel/init runs
# them and powers off. Passes only if init prints its PASS marker and the
# console shows no FAIL, so a program the 6.1 verifier rejects fails here with
# the verifier's log on stdout (the CI log) and in build/kernel-test/console.log.
#
# Downloads and builds are cached under build/kernel-test/. Environment:
#   KERNEL_PACKAGE  versioned image package to boot (default: what
#                   linux-image-cloud-amd64 depends on)
#   VM_TIMEOUT      seconds before the VM is killed (default 270)
#   VM_MEMORY       guest memory (default 1G)
#   TEST_RUN        only the Go tests matching this -test.run regexp (no
#                   spaces), and no daemon runs: to repeat one test on 6.1
#   TEST_COUNT      run the Go tests this many times (-test.count; default 1),
#                   to catch a rare failure (raise VM_TIMEOUT to match)
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH=/usr/local/go/bin:$PATH

work=build/kernel-test
timeout_s=${VM_TIMEOUT:-270}
memory=${VM_MEMORY:-1G}
marker=SYSOBSD_KERNEL_TEST
test_run=${TEST_RUN:-}
test_count=${TEST_COUNT:-1}
case "$test_count" in
'' | *[!0-9]* | 0) echo "kernel-test: TEST_COUNT must be a positive number" >&2; exit 2 ;;
esac
case "$test_run" in
*[[:space:]]*) echo "kernel-test: TEST_RUN must not contain spaces" >&2; exit 2 ;;
esac
mkdir -p "$work"
started=$SECONDS

say() { echo "kernel-test: $*"; }

# --- Debian packages: apt-get only when something is missing ---------------
scripts/install-deps.sh kernel
if ! command -v go >/dev/null 2>&1; then
	say "Go ≥1.26 is needed at /usr/local/go (or on PATH)" >&2
	exit 1
fi

# --- Kernel: the versioned image the cloud metapackage depends on ----------
resolve_kernel() {
	apt-cache depends linux-image-cloud-amd64 2>/dev/null |
		awk '/Depends: linux-image-[0-9]/ { print $2; exit }'
}
pkg=${KERNEL_PACKAGE:-}
if [ -z "$pkg" ]; then
	pkg=$(resolve_kernel)
	if [ -z "$pkg" ]; then
		apt-get update -qq
		pkg=$(resolve_kernel)
	fi
fi
if [ -z "$pkg" ]; then
	# Offline with a cache: boot the newest kernel already unpacked.
	pkg=$(find "$work/kernel" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' 2>/dev/null | sort -V | tail -n 1)
fi
if [ -z "$pkg" ]; then
	say "cannot resolve linux-image-cloud-amd64 to a versioned kernel package (apt-get update?)" >&2
	exit 1
fi
kroot=$work/kernel/$pkg
vmlinuz=$(find "$kroot/boot" -name 'vmlinuz-*' 2>/dev/null | head -n 1 || true)
if [ -z "$vmlinuz" ]; then
	mkdir -p "$work/debs" "$work/kernel"
	deb=$(find "$work/debs" -name "${pkg}_*.deb" | head -n 1)
	if [ -z "$deb" ]; then
		say "downloading $pkg"
		# As root, apt-get download drops to _apt, which cannot write here.
		download() { (cd "$work/debs" && apt-get download -qq -o APT::Sandbox::User=root "$pkg"); }
		download || { apt-get update -qq && download; }
		deb=$(find "$work/debs" -name "${pkg}_*.deb" | head -n 1)
	fi
	# Only boot/ (vmlinuz, config) is needed: everything the tests use is
	# built in, so the 90 MB of modules are not kept.
	rm -rf "$kroot.tmp" "$kroot"
	dpkg-deb -x "$deb" "$kroot.tmp"
	mkdir -p "$kroot"
	mv "$kroot.tmp/boot" "$kroot/boot"
	rm -rf "$kroot.tmp"
	vmlinuz=$(find "$kroot/boot" -name 'vmlinuz-*' | head -n 1)
	# A newer kernel replaces the cached one.
	find "$work/kernel" -mindepth 1 -maxdepth 1 ! -name "$pkg" -exec rm -rf {} +
	find "$work/debs" -name '*.deb' ! -name "${pkg}_*" -delete
fi
if ! grep -q '^CONFIG_DEBUG_INFO_BTF=y' "$kroot"/boot/config-*; then
	say "$pkg has no BTF (CONFIG_DEBUG_INFO_BTF); sysobsd cannot load there" >&2
	exit 1
fi

# --- Binaries: static, so the initramfs needs no libc ----------------------
rootfs=$work/rootfs
rm -rf "$rootfs"
mkdir -p "$rootfs"/{bin,proc,sys,dev,tmp,run,etc}
version=$(git describe --tags --always --dirty 2>/dev/null || echo dev)
say "building (CGO_ENABLED=0)"
CGO_ENABLED=0 go build -trimpath \
	-ldflags "-s -w -X github.com/prometheus/common/version.Version=$version" \
	-o "$rootfs/bin/sysobsd" ./cmd/sysobsd
CGO_ENABLED=0 go test -c -trimpath -o "$rootfs/bin/kernel.test" ./test/kernel/
CGO_ENABLED=0 go test -c -trimpath -o "$rootfs/bin/integration.test" ./test/integration/
gcc -O2 -static -pthread -o "$rootfs/bin/workload" test/workload/workload.c
gcc -m32 -O2 -static -pthread -o "$rootfs/bin/workload32" test/workload/workload.c

# busybox-static's /bin/busybox (it replaces the dynamic busybox package).
cp /bin/busybox "$rootfs/bin/busybox"
for applet in $("$rootfs/bin/busybox" --list); do
	[ -e "$rootfs/bin/$applet" ] || ln -s busybox "$rootfs/bin/$applet"
done
install -m 0755 test/kernel/init "$rootfs/init"

# Uncompressed: under TCG, unpacking is faster than decompressing.
initrd=$work/initramfs.cpio
(cd "$rootfs" && find . -print0 | cpio --null -o -H newc --quiet) >"$initrd.tmp"
mv "$initrd.tmp" "$initrd"
say "initramfs $(du -h "$initrd" | cut -f1), kernel $pkg, built in $((SECONDS - started)) s"

# --- Boot ------------------------------------------------------------------
console=$work/console.log
say "booting $(basename "$vmlinuz") under qemu (TCG), console in $console"
boot_started=$SECONDS
set +e
# TCG only: KVM on the CI machines fails with emulation errors. One TCG
# thread for both vCPUs: with multi-threaded TCG, both vCPUs sometimes spun
# forever on the syscall tracepoint's jump label once an attach patched it
# (soft lockup in syscall_trace_enter). loglevel=5 prints warnings with their
# stacks; an oops or a lockup ends the VM at once. init reads sysobsd.run.
timeout --kill-after=10 "$timeout_s" qemu-system-x86_64 \
	-accel tcg,thread=single -cpu max -smp 2 -m "$memory" \
	-nographic -no-reboot -net none \
	-kernel "$vmlinuz" -initrd "$initrd" \
	-append "console=ttyS0 quiet loglevel=5 panic=-1 oops=panic softlockup_panic=1 hung_task_panic=1${test_run:+ sysobsd.run=$test_run} sysobsd.count=$test_count" \
	</dev/null 2>&1 | sed -u 's/\r$//; s/\x1b\[[0-9;?]*[a-zA-Z]//g; s/\x1bc//g' | tee "$console"
status=${PIPESTATUS[0]}
set -e
say "qemu exited with $status after $((SECONDS - boot_started)) s (total $((SECONDS - started)) s)"

# --- Verdict ---------------------------------------------------------------
kernel=$(sed -n "s/.*$marker kernel=//p" "$console" | head -n 1)
say "kernel in the VM: ${kernel:-unknown}"
result=$(grep -o "$marker result=.*" "$console" | tail -n 1 || true)
failures=$(grep -E '^(--- FAIL|FAIL|panic:)|Kernel panic|BUG:' "$console" || true)
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
	say "FAIL: the VM did not power off within $timeout_s s" >&2
	exit 1
fi
if [ -n "$failures" ]; then
	say "FAIL: the console reports failures:" >&2
	echo "$failures" >&2
	# The verifier's verdict closes its log: repeat the first one here.
	last=$(grep -n -m 1 -E '^[[:space:]]+processed [0-9]+ insns' "$console" | cut -d: -f1 || true)
	if [ -n "$last" ]; then
		say "the first verifier rejection ends (whole log above and in $console):" >&2
		sed -n "$((last > 6 ? last - 6 : 1)),${last}p" "$console" >&2
	fi
	exit 1
fi
case "$result" in
"$marker result=PASS "*)
	say "PASS on ${kernel:-unknown} (${result#"$marker result=PASS "})${test_run:+, only the tests matching $test_run}"
	;;
"")
	say "FAIL: init printed no result marker (crashed or killed?)" >&2
	exit 1
	;;
*)
	say "FAIL: $result" >&2
	exit 1
	;;
esac
