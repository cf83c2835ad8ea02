// Package kernel is the kernel-compatibility test: it loads and attaches
// every BPF program variant and reports the verifier's whole log when the
// running kernel rejects one. `make test` runs it on the host; `make
// kernel-test` (run.sh) runs it, the integration tests and the daemon in VMs
// booting Debian's 6.1 and 6.12 amd64 and 6.1 arm64 kernels, and checks that
// the daemon refuses Debian 11's 5.10 in one line.
package kernel
