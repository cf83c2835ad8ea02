// Package kernel is the kernel-compatibility test: it loads and attaches
// every BPF program variant and reports the verifier's whole log when the
// running kernel rejects one. `make test` runs it on the host; `make
// kernel-test` (run.sh) runs it, the integration tests and the daemon in a
// VM booting Debian 12's 6.1 kernel.
package kernel
