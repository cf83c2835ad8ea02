// Command bytecalls writes bpf/headers/byte_calls.h from syscalls.ByteCalls
// (go generate in internal/loader, before bpf2go).
package main

import (
	"fmt"
	"os"

	"github.com/sysobsd/sysobsd/internal/syscalls"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: bytecalls OUTPUT.h")
		os.Exit(2)
	}
	h, err := syscalls.ByteCallsHeader()
	if err == nil {
		err = os.WriteFile(os.Args[1], []byte(h), 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bytecalls:", err)
		os.Exit(1)
	}
}
