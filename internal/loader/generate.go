package loader

// The generated sysobsd_*_bpfel.go and .o files are committed, so building
// needs no clang; `make generate` reruns this after a change in bpf/.
//go:generate go run ../syscalls/bytecalls ../../bpf/headers/byte_calls.h
//go:generate go tool bpf2go -tags linux -target amd64,arm64 -type lifecycle_event -type syscall_key -type errno_key -type syscall_stats_value -type call_slot -type call_slot_state -type latency_hist_value -type drop_reason -type lifecycle_kind -type process_filter -type filter_settings_value -type notable_event -type group_key -type cgroup_new_event -type layout -type match_bits -type filter_dim -type notable_kind -type in_flight_record -type thread_state sysobsd ../../bpf/sysobsd.bpf.c -- -I../../bpf -I/usr/include/x86_64-linux-gnu -O2 -g -Wall -Werror
