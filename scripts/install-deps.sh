#!/usr/bin/env bash
# Installs what sysobsd's build (run), tests (test) or the 6.1 VM test
# (kernel) need on Debian 12.
# Skips apt-get when everything is already there.
set -euo pipefail
what=${1:-test}

need_go() {
	if ! command -v go >/dev/null 2>&1; then
		echo "install-deps: Go ≥1.26 is needed at /usr/local/go (or on PATH); Debian 12's golang-go is too old" >&2
		exit 1
	fi
}

packages=()
case "$what" in
run) ;;
test)
	# tmux drives `sysobsd top` in a real terminal; podman (with runc: crun
	# refuses hybrid cgroup layouts) runs the container image as a DaemonSet would.
	packages=(clang llvm libbpf-dev linux-libc-dev bpftool gcc libc6-dev prometheus util-linux strace git systemd lintian tmux podman runc clang-format)
	# 32-bit workloads for the compat-ABI test.
	[ "$(dpkg --print-architecture)" = amd64 ] && packages+=(gcc-multilib)
	;;
kernel) packages=(qemu-system-x86 qemu-system-arm busybox-static cpio gcc libc6-dev gcc-multilib clang binutils-aarch64-linux-gnu libc6-dev-arm64-cross libgcc-12-dev-arm64-cross) ;;
*) echo "usage: $0 run|test|kernel" >&2; exit 2 ;;
esac
need_go

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "install-deps: missing Debian packages: ${missing[*]}; run as root or install them" >&2
		exit 1
	fi
	echo "install-deps: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
