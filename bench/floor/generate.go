package floor

// The generated floor_*_bpfel.go and .o files are committed, so building the
// benchmark needs no clang; `go generate ./bench/floor/` rebuilds them.
//go:generate go tool bpf2go -tags linux -target amd64,arm64 floor bpf/floor.bpf.c -- -I/usr/include/x86_64-linux-gnu -O2 -g -Wall -Werror
