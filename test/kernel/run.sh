#!/usr/bin/env bash
# make kernel-test: boots Debian's cloud kernels under qemu (TCG, no KVM),
# one after the other, each with an initramfs of busybox, the static daemon,
# the load test of this directory, the integration tests and their workload;
# test/kernel/init runs them and powers off. Ends with one line per kernel:
#
#   bullseye  Debian 11, 5.10, amd64: sysobsd must refuse it in one line
#   bookworm  Debian 12, 6.1,  amd64
#   trixie    Debian 13, 6.12, amd64
#   arm64     Debian 12, 6.1,  arm64 (qemu-system-aarch64 -M virt)
#
# A kernel passes only if init prints its PASS marker (or, on a kernel older
# than sysobsd's minimum, the daemon's one line naming what it lacks) and the
# console shows no FAIL; a program a verifier rejects fails with the
# verifier's log on stdout (the CI log) and in build/kernel-test/console-*.log.
#
# Kernels and busybox:arm64 come from Debian's archive through a private apt
# configuration under build/kernel-test/apt/ (the host's is not touched), with
# the archive's URI taken from the host's sources. Downloads and builds are
# cached under build/kernel-test/. Environment:
#   KERNELS         which of the above to boot (default: all four)
#   KERNEL_PACKAGE  versioned image package to boot instead of the current
#                   one (only with a single kernel in KERNELS)
#   DEBIAN_MIRROR   archive URI (default: the host's, from its apt sources)
#   VM_TIMEOUT      seconds before a VM is killed (default 900, arm64 2400)
#   VM_MEMORY       guest memory (default 1G)
#   TEST_RUN        only the Go tests matching this -test.run regexp (no
#                   spaces), and no daemon runs: to repeat one test
#   TEST_COUNT      run the Go tests this many times (-test.count; default 1),
#                   to catch a rare failure (raise VM_TIMEOUT to match)
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH=/usr/local/go/bin:$PATH

work=build/kernel-test
kernels=${KERNELS:-bullseye bookworm trixie arm64}
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
case "${VM_TIMEOUT:-}" in
'' | [1-9] | [1-9][0-9]*) ;;
*) echo "kernel-test: VM_TIMEOUT must be a number of seconds" >&2; exit 2 ;;
esac
# name → Debian suite and architecture.
suite_of() {
	case "$1" in
	bullseye | bookworm | trixie) echo "$1 amd64" ;;
	arm64) echo "bookworm arm64" ;;
	*) return 1 ;;
	esac
}
for k in $kernels; do
	suite_of "$k" >/dev/null || { echo "kernel-test: KERNELS: unknown kernel $k (bullseye, bookworm, trixie, arm64)" >&2; exit 2; }
done
# shellcheck disable=SC2086 # one word per kernel
set -- $kernels
if [ -n "${KERNEL_PACKAGE:-}" ] && [ $# -ne 1 ]; then
	echo "kernel-test: KERNEL_PACKAGE needs a single kernel in KERNELS" >&2
	exit 2
fi
mkdir -p "$work"
work_abs=$(cd "$work" && pwd)
started=$SECONDS

say() { echo "kernel-test: $*"; }

# --- Debian packages on the host: apt-get only when something is missing ---
scripts/install-deps.sh kernel
if ! command -v go >/dev/null 2>&1; then
	say "Go ≥1.26 is needed at /usr/local/go (or on PATH)" >&2
	exit 1
fi
# The cache's layout before the matrix: one kernel in kernel/ and debs/.
rm -rf "$work/kernel" "$work/debs" "$work/rootfs" "$work/initramfs.cpio" "$work/console.log"

# --- A private apt: own sources, lists, cache and dpkg status ---------------
# The archive URI and keyring are the host's (deb822 or one-line sources).
mirror=${DEBIAN_MIRROR:-}
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
if [ -z "$mirror" ] && [ -r /etc/apt/sources.list.d/debian.sources ]; then
	# The first stanza with a suite that is neither -security nor -updates.
	read -r mirror signed < <(awk '
		/^[[:space:]]*$/ { if (uri != "" && plain) { print uri, key; exit } uri = ""; key = ""; plain = 0; next }
		/^URIs:/ { uri = $2 }
		/^Signed-By:/ { key = $2 }
		/^Suites:/ { for (i = 2; i <= NF; i++) if ($i !~ /-/) plain = 1 }
		END { if (uri != "" && plain) print uri, key }' /etc/apt/sources.list.d/debian.sources) || true
	[ -n "${signed:-}" ] && [ -r "$signed" ] && keyring=$signed
fi
if [ -z "$mirror" ]; then
	mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
		awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }') || true
fi

# papt DIR ARCH CMD ARGS...: apt-get or apt-cache with the private state in DIR.
papt() {
	local dir=$1 arch=$2 cmd=$3
	shift 3
	"$cmd" -q -o Dir::Etc::SourceList="$dir/sources.list" -o Dir::Etc::SourceParts=/dev/null \
		-o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null \
		-o Dir::State::Lists="$dir/lists" -o Dir::State::status="$dir/status" -o Dir::Cache="$dir/cache" \
		-o APT::Architecture="$arch" -o APT::Architectures="$arch" -o Acquire::Languages=none \
		-o APT::Sandbox::User=root "$@"
}
# apt_dir SUITE ARCH: prints the private apt directory of SUITE for ARCH,
# after apt-get update if its lists are missing or older than a day.
apt_dir() {
	local suite=$1 arch=$2 dir=$work_abs/apt/$1-$2
	mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
	touch "$dir/status"
	echo "deb [signed-by=$keyring] $mirror $suite main" >"$dir/sources.list"
	# A stamp, not the lists' dates: apt gives them the archive's.
	if [ -z "$(find "$dir" -maxdepth 1 -name updated -mtime -1 2>/dev/null)" ]; then
		if [ -z "$mirror" ]; then
			say "no Debian archive URI in the host's apt sources; set DEBIAN_MIRROR" >&2
		elif papt "$dir" "$arch" apt-get update -qq >&2; then
			touch "$dir/updated"
		else
			say "apt-get update for $suite/$arch failed; using the cached lists" >&2
		fi
	fi
	echo "$dir"
}
# download DIR ARCH DEST PACKAGE: the .deb of PACKAGE into DEST; prints its path.
download() {
	local dir=$1 arch=$2 dest=$3 pkg=$4 deb
	mkdir -p "$dest"
	deb=$(find "$dest" -name "${pkg%%:*}_*.deb" | head -n 1)
	if [ -z "$deb" ]; then
		say "downloading $pkg" >&2
		(cd "$dest" && papt "$dir" "$arch" apt-get download -qq "$pkg") >&2 || return 1
		deb=$(find "$dest" -name "${pkg%%:*}_*.deb" | head -n 1)
	fi
	echo "$deb"
}

# Functions called in a condition run without set -e: they return 1 themselves.

# fetch_kernel NAME: sets pkg and vmlinuz for NAME, downloading and unpacking
# the image package the cloud metapackage depends on; a newer one replaces
# the cached one. Only boot/ (vmlinuz, config) is kept: everything the tests
# use is built in, so the modules are not needed.
fetch_kernel() {
	local name=$1 suite arch dir kroot deb
	read -r suite arch < <(suite_of "$name")
	dir=$(apt_dir "$suite" "$arch")
	pkg=${KERNEL_PACKAGE:-}
	if [ -z "$pkg" ]; then
		pkg=$(papt "$dir" "$arch" apt-cache depends "linux-image-cloud-$arch" 2>/dev/null |
			awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
	fi
	if [ -z "$pkg" ]; then
		# Offline with a cache: boot the newest kernel already unpacked.
		pkg=$(find "$work/$name/kernel" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' 2>/dev/null | sort -V | tail -n 1)
	fi
	if [ -z "$pkg" ]; then
		say "$name: cannot resolve linux-image-cloud-$arch in $suite to a versioned package" >&2
		return 1
	fi
	kroot=$work/$name/kernel/$pkg
	vmlinuz=$(find "$kroot/boot" -name 'vmlinuz-*' 2>/dev/null | head -n 1 || true)
	if [ -z "$vmlinuz" ]; then
		deb=$(download "$dir" "$arch" "$work/$name/debs" "$pkg") || return 1
		rm -rf "$kroot.tmp" "$kroot"
		mkdir -p "$work/$name/kernel"
		dpkg-deb -x "$deb" "$kroot.tmp" || return 1
		mkdir -p "$kroot"
		mv "$kroot.tmp/boot" "$kroot/boot"
		rm -rf "$kroot.tmp"
		vmlinuz=$(find "$kroot/boot" -name 'vmlinuz-*' | head -n 1)
		find "$work/$name/kernel" -mindepth 1 -maxdepth 1 ! -name "$pkg" -exec rm -rf {} +
		find "$work/$name/debs" -name '*.deb' ! -name "${pkg}_*" -delete
	fi
	if ! grep -q '^CONFIG_DEBUG_INFO_BTF=y' "$kroot"/boot/config-*; then
		say "$name: $pkg has no BTF (CONFIG_DEBUG_INFO_BTF); sysobsd cannot load there" >&2
		return 1
	fi
}

# --- Binaries: static, so the initramfs needs no libc ----------------------
# build ARCH: the initramfs of ARCH (amd64 or arm64) at $work/initramfs-ARCH.cpio.
version=$(git describe --tags --always --dirty 2>/dev/null || echo dev)
build() {
	local arch=$1 rootfs=$work/rootfs-$1 initrd=$work/initramfs-$1.cpio t0=$SECONDS busybox
	rm -rf "$rootfs"
	mkdir -p "$rootfs"/{bin,proc,sys,dev,tmp,run,etc}
	say "building for $arch (CGO_ENABLED=0)"
	GOARCH=$arch CGO_ENABLED=0 go build -trimpath \
		-ldflags "-s -w -X github.com/prometheus/common/version.Version=$version" \
		-o "$rootfs/bin/sysobsd" ./cmd/sysobsd || return 1
	GOARCH=$arch CGO_ENABLED=0 go test -c -trimpath -o "$rootfs/bin/kernel.test" ./test/kernel/ || return 1
	GOARCH=$arch CGO_ENABLED=0 go test -c -trimpath -o "$rootfs/bin/integration.test" ./test/integration/ || return 1
	case "$arch" in
	amd64)
		gcc -O2 -static -pthread -o "$rootfs/bin/workload" test/workload/workload.c || return 1
		gcc -m32 -O2 -static -pthread -o "$rootfs/bin/workload32" test/workload/workload.c || return 1
		# busybox-static's /bin/busybox (it replaces the dynamic busybox package).
		busybox=/bin/busybox
		;;
	arm64)
		# clang, not gcc-aarch64-linux-gnu: Debian's cross gcc conflicts with
		# gcc-multilib, which builds workload32.
		clang --target=aarch64-linux-gnu -O2 -static -pthread -o "$rootfs/bin/workload" test/workload/workload.c || return 1
		local dir deb
		dir=$(apt_dir bookworm arm64)
		deb=$(download "$dir" arm64 "$work/arm64/debs" busybox-static) || return 1
		rm -rf "$work/arm64/busybox"
		dpkg-deb -x "$deb" "$work/arm64/busybox" || return 1
		busybox=$work/arm64/busybox/bin/busybox
		;;
	esac
	cp "$busybox" "$rootfs/bin/busybox" || return 1
	# The host's busybox lists the applets: the arm64 one cannot run here.
	for applet in $(/bin/busybox --list); do
		[ -e "$rootfs/bin/$applet" ] || ln -s busybox "$rootfs/bin/$applet"
	done
	install -m 0755 test/kernel/init "$rootfs/init"
	# Uncompressed: under TCG, unpacking is faster than decompressing.
	(cd "$rootfs" && find . -print0 | cpio --null -o -H newc --quiet) >"$initrd.tmp" || return 1
	mv "$initrd.tmp" "$initrd"
	say "initramfs-$arch $(du -h "$initrd" | cut -f1), built in $((SECONDS - t0)) s"
}

# --- Boot ------------------------------------------------------------------
# boot NAME ARCH: boots vmlinuz with ARCH's initramfs; console in $console.
boot() {
	local name=$1 arch=$2 timeout_s
	local append="quiet loglevel=5 panic=-1 oops=panic softlockup_panic=1 hung_task_panic=1${test_run:+ sysobsd.run=$test_run} sysobsd.count=$test_count"
	local -a qemu
	# TCG only: KVM on the CI machines fails with emulation errors. One TCG
	# thread for both vCPUs: with multi-threaded TCG, both vCPUs sometimes
	# spun forever on the syscall tracepoint's jump label once an attach
	# patched it (soft lockup in syscall_trace_enter). loglevel=5 prints
	# warnings with their stacks; an oops or a lockup ends the VM at once.
	# init reads sysobsd.run and sysobsd.count.
	# shellcheck disable=SC2054 # qemu's options have commas
	case "$arch" in
	amd64)
		timeout_s=${VM_TIMEOUT:-900}
		qemu=(qemu-system-x86_64 -accel tcg,thread=single -cpu max -append "console=ttyS0 $append")
		;;
	arm64)
		# pauth-impdef: QEMU's own pointer-authentication hash, much
		# cheaper under TCG than the architected QARMA.
		timeout_s=${VM_TIMEOUT:-2400}
		qemu=(qemu-system-aarch64 -M virt -accel tcg,thread=single -cpu max,pauth-impdef=on -append "console=ttyAMA0 $append")
		;;
	esac
	say "$name: booting $(basename "$vmlinuz") under qemu (TCG), console in $console"
	set +e
	timeout --kill-after=10 "$timeout_s" "${qemu[@]}" -smp 2 -m "$memory" \
		-nographic -no-reboot -net none -kernel "$vmlinuz" -initrd "$work/initramfs-$arch.cpio" \
		</dev/null 2>&1 | sed -u 's/\r$//; s/\x1b\[[0-9;?]*[a-zA-Z]//g; s/\x1bc//g' | tee "$console"
	status=${PIPESTATUS[0]}
	set -e
	if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
		status="killed after $timeout_s s"
	fi
}

# verdict NAME: reads $console; prints the kernel's result line (PASS...,
# "unsupported, as expected: ..." or FAIL...) and its failures on stderr.
verdict() {
	local name=$1 kernel result failures last line
	kernel=$(sed -n "s/.*$marker kernel=//p" "$console" | head -n 1)
	result=$(grep -o "$marker result=.*" "$console" | tail -n 1 | sed 's/ kernel=[^ ]*//' || true)
	failures=$(grep -E '^(--- FAIL|FAIL|panic:)|Kernel panic|BUG:' "$console" || true)
	printf '%s %s: ' "$name" "${kernel:-$pkg}"
	if [ "$status" != 0 ] && [ "$status" != "${status#killed}" ]; then
		echo "FAIL: the VM did not power off ($status)"
		return 1
	fi
	if [ -n "$failures" ]; then
		echo "FAIL: the console reports failures"
		{
			say "$name: the console's failures:"
			echo "$failures"
			# The verifier's verdict closes its log: repeat the first one here.
			last=$(grep -n -m 1 -E '^[[:space:]]+processed [0-9]+ insns' "$console" | cut -d: -f1 || true)
			if [ -n "$last" ]; then
				say "$name: the first verifier rejection ends (whole log in $console):"
				sed -n "$((last > 6 ? last - 6 : 1)),${last}p" "$console"
			fi
		} >&2
		return 1
	fi
	case "$result" in
	"$marker result=PASS "*)
		echo "PASS (${result#"$marker result=PASS "})${test_run:+, only the tests matching $test_run}"
		;;
	"$marker result=UNSUPPORTED "*)
		# init checked the daemon's line; it must name what is missing.
		line=$(sed -n "s/^$marker unsupported: //p" "$console" | tail -n 1)
		case "$line" in
		*" lacks "*"; sysobsd needs Linux ≥"*) echo "unsupported, as expected: $line" ;;
		*)
			echo "FAIL: unsupported, but the daemon's line does not say what is missing: ${line:-(none)}"
			return 1
			;;
		esac
		;;
	"") echo "FAIL: init printed no result marker (crashed or killed?)"; return 1 ;;
	*) echo "FAIL: ${result#"$marker "}"; return 1 ;;
	esac
}

# --- The matrix, one VM at a time -------------------------------------------
results=()
failed=0
built=""
for name in $kernels; do
	read -r suite arch < <(suite_of "$name")
	t0=$SECONDS
	console=$work/console-$name.log
	rm -f "$console"
	if ! fetch_kernel "$name"; then
		results+=("$name: FAIL: no kernel (see above)")
		failed=1
		continue
	fi
	case " $built " in
	*" $arch "*) ;;
	*)
		if ! build "$arch"; then
			results+=("$name: FAIL: could not build for $arch")
			failed=1
			continue
		fi
		built="$built $arch"
		;;
	esac
	boot "$name" "$arch"
	line=$(verdict "$name") || failed=1
	line="$line, $((SECONDS - t0)) s"
	say "$line"
	results+=("$line")
done

say "matrix done in $((SECONDS - started)) s; consoles in $work/console-*.log"
for line in "${results[@]}"; do
	say "$line"
done
exit "$failed"
