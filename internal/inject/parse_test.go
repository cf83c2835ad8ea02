package inject

import (
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/sysobsd/sysobsd/internal/syscalls"
)

func TestParseRejectsBadInputNamingThePart(t *testing.T) {
	cases := []struct {
		expr, want string
	}{
		{"trace=open", `-e trace=open: "trace" is not supported: only inject= expressions (e.g. -e inject=write:error=ENOSPC)`},
		{"inject=wirte:error=EIO", `-e inject=wirte:error=EIO: unknown syscall "wirte" (or a class this architecture lacks); classes: %%stat, %%statfs, %clock, %creds, %desc, %file, %fstat, %fstatfs, %ipc, %lstat, %memory, %net, %network, %process, %pure, %signal, %stat, %statfs`},
		{"inject=%nosuchclass:error=EIO", `-e inject=%nosuchclass:error=EIO: unknown syscall "%nosuchclass" (or a class this architecture lacks); classes: %%stat, %%statfs, %clock, %creds, %desc, %file, %fstat, %fstatfs, %ipc, %lstat, %memory, %net, %network, %process, %pure, %signal, %stat, %statfs`},
		{"inject=write:error=ENOSPCX", `-e inject=write:error=ENOSPCX: error=ENOSPCX: unknown errno; give a name like ENOSPC or a number from 1 to 4095`},
		{"inject=write:error=4096", `-e inject=write:error=4096: error=4096: out of range; an errno is 1 to 4095, or a name like ENOSPC`},
		{"inject=write:error=0", `-e inject=write:error=0: error=0: out of range; an errno is 1 to 4095, or a name like ENOSPC`},
		{"inject=write:eror=EIO", `-e inject=write:eror=EIO: unknown key "eror"; keys: error=, retval=, when=, signal=, delay_enter=, delay_exit=`},
		{"inject=write:error", `-e inject=write:error: "error": expected KEY=VALUE with KEY one of error=, retval=, when=, signal=, delay_enter=, delay_exit=`},
		{"inject=write", `-e inject=write: nothing to inject: give one of error=, retval=, signal=, delay_enter=, delay_exit=`},
		{"inject=:error=EIO", `-e inject=:error=EIO: no syscall set before the first ':' (e.g. inject=openat:error=ENOENT)`},
		{"inject=write:error=EIO:retval=1", `-e inject=write:error=EIO:retval=1: error= and retval= exclude each other`},
		{"inject=write:error=EIO:error=EIO", `-e inject=write:error=EIO:error=EIO: error= given twice`},
		{"inject=write:retval=-1", `-e inject=write:retval=-1: retval=-1: not a number from 0 to 18446744073709551615`},
		{"inject=write:signal=SIGNOPE", `-e inject=write:signal=SIGNOPE: signal=SIGNOPE: unknown signal; give a name like SIGUSR1 or a number from 1 to 64`},
		{"inject=write:signal=65", `-e inject=write:signal=65: signal=65: unknown signal; give a name like SIGUSR1 or a number from 1 to 64`},
		{"inject=write:delay_enter=soon", `-e inject=write:delay_enter=soon: delay_enter=soon: not a time; give a number of microseconds or one with a unit: 10ms, 1.5s, 200us, 500ns`},
		{"inject=write:delay_exit=5h", `-e inject=write:delay_exit=5h: delay_exit=5h: not a time; give a number of microseconds or one with a unit: 10ms, 1.5s, 200us, 500ns`},
		{"inject=write:syscall=getpid", `-e inject=write:syscall=getpid: syscall= is not supported: a seccomp filter can fail, answer or delay a call, not change it`},
		{"inject=write:error=EIO:when=0", `-e inject=write:error=EIO:when=0: when=0: the first call must be a number from 1 to 65535; the forms are N, N+, N+STEP, N..M, N..M+STEP`},
		{"inject=write:error=EIO:when=65536", `-e inject=write:error=EIO:when=65536: when=65536: the first call must be a number from 1 to 65535; the forms are N, N+, N+STEP, N..M, N..M+STEP`},
		{"inject=write:error=EIO:when=x", `-e inject=write:error=EIO:when=x: when=x: the first call must be a number from 1 to 65535; the forms are N, N+, N+STEP, N..M, N..M+STEP`},
		{"inject=write:error=EIO:when=3..2", `-e inject=write:error=EIO:when=3..2: when=3..2: the last call must be at least the first and below 65535; the forms are N, N+, N+STEP, N..M, N..M+STEP`},
		{"inject=write:error=EIO:when=3..65535", `-e inject=write:error=EIO:when=3..65535: when=3..65535: the last call must be at least the first and below 65535; the forms are N, N+, N+STEP, N..M, N..M+STEP`},
		{"inject=write:error=EIO:when=3.5", `-e inject=write:error=EIO:when=3.5: when=3.5: the first call must be a number from 1 to 65535; the forms are N, N+, N+STEP, N..M, N..M+STEP`},
		{"inject=write:error=EIO:when=2+0", `-e inject=write:error=EIO:when=2+0: when=2+0: the step must be a number from 1 to 65535; the forms are N, N+, N+STEP, N..M, N..M+STEP`},
		{"inject=write:error=EIO:when=2..4+x", `-e inject=write:error=EIO:when=2..4+x: when=2..4+x: the step must be a number from 1 to 65535; the forms are N, N+, N+STEP, N..M, N..M+STEP`},
		{"inject=/[:error=EIO", "-e inject=/[:error=EIO: regular expression \"[\": error parsing regexp: missing closing ]: `[`"},
		{"inject=none:error=EIO", `-e inject=none:error=EIO: the syscall set "none" names no syscall`},
	}
	for _, c := range cases {
		t.Run(c.expr, func(t *testing.T) {
			_, err := Parse([]string{c.expr}, syscalls.Host())
			if err == nil || err.Error() != c.want {
				t.Errorf("Parse(%q) = %v,\nwant %s", c.expr, err, c.want)
			}
		})
	}
	if _, err := Parse(nil, syscalls.Host()); err == nil {
		t.Error("Parse(nil) succeeded")
	}
}

func number(t *testing.T, name string) uint32 {
	t.Helper()
	nr, ok := syscalls.Host().Number(syscalls.Native, name)
	if !ok {
		t.Fatalf("no syscall %s", name)
	}
	return nr
}

func TestParseReadsStraceSyntax(t *testing.T) {
	cases := []struct {
		expr   string
		has    []string // syscalls the rule applies to
		hasNot []string
		rule   Rule // Expr not compared
	}{
		{"inject=write:error=ENOSPC", []string{"write"}, []string{"read"}, Rule{First: 1, Last: lastInf, Step: 1, Errno: 28}},
		{"inject=write,openat:error=28:when=3", []string{"write", "openat"}, nil, Rule{First: 3, Last: lastInf, Step: 0, Errno: 28}},
		{"inject=write:error=EIO:when=3+", nil, nil, Rule{First: 3, Last: lastInf, Step: 1, Errno: 5}},
		{"inject=write:error=EIO:when=3+2", nil, nil, Rule{First: 3, Last: lastInf, Step: 2, Errno: 5}},
		{"inject=write:error=EIO:when=2..5", nil, nil, Rule{First: 2, Last: 5, Step: 1, Errno: 5}},
		{"inject=write:error=EIO:when=2..9+3", nil, nil, Rule{First: 2, Last: 9, Step: 3, Errno: 5}},
		{"inject=write:error=EIO:when=2..9+", nil, nil, Rule{First: 2, Last: 9, Step: 1, Errno: 5}},
		{"inject=getpid:retval=42", []string{"getpid"}, nil, Rule{First: 1, Last: lastInf, Step: 1, Retval: 42, HasRetval: true}},
		{"inject=getpid:retval=0x10:signal=USR1", nil, nil, Rule{First: 1, Last: lastInf, Step: 1, Retval: 16, HasRetval: true, Signal: syscall.SIGUSR1}},
		{"inject=read:delay_enter=10ms:delay_exit=5", nil, nil, Rule{First: 1, Last: lastInf, Step: 1, DelayEnter: 10 * time.Millisecond, DelayExit: 5 * time.Microsecond}},
		{"inject=read:delay_enter=1.5s:signal=10", nil, nil, Rule{First: 1, Last: lastInf, Step: 1, DelayEnter: 1500 * time.Millisecond, Signal: syscall.SIGUSR1}},
		{"inject=%net:error=ECONNREFUSED", []string{"connect", "socket", "sendmsg"}, []string{"write", "openat"}, Rule{First: 1, Last: lastInf, Step: 1, Errno: 111}},
		{"inject=%file:error=EACCES", []string{"openat", "execve", "stat", "unlinkat"}, []string{"write", "fstat"}, Rule{First: 1, Last: lastInf, Step: 1, Errno: 13}},
		{"inject=file:error=EACCES", []string{"openat"}, []string{"write"}, Rule{First: 1, Last: lastInf, Step: 1, Errno: 13}},
		{"inject=%PROCESS:error=EAGAIN", []string{"clone", "execve", "exit_group", "wait4"}, []string{"write"}, Rule{First: 1, Last: lastInf, Step: 1, Errno: 11}},
		{"inject=!write:error=EIO", []string{"read", "openat"}, []string{"write"}, Rule{First: 1, Last: lastInf, Step: 1, Errno: 5}},
		{"inject=all:error=EIO", []string{"read", "write"}, nil, Rule{First: 1, Last: lastInf, Step: 1, Errno: 5}},
		{"inject=/^pread:error=EIO", []string{"pread64"}, []string{"read"}, Rule{First: 1, Last: lastInf, Step: 1, Errno: 5}},
		{"inject=1:error=EIO", []string{"write"}, []string{"read"}, Rule{First: 1, Last: lastInf, Step: 1, Errno: 5}},
		{"inject=write,?nosuchcall:error=EIO", []string{"write"}, nil, Rule{First: 1, Last: lastInf, Step: 1, Errno: 5}},
	}
	for _, c := range cases {
		t.Run(c.expr, func(t *testing.T) {
			p, err := Parse([]string{c.expr}, syscalls.Host())
			if err != nil {
				t.Fatal(err)
			}
			for _, name := range c.has {
				if p.Rules[number(t, name)] == nil {
					t.Errorf("%s not in the set", name)
				}
			}
			for _, name := range c.hasNot {
				if p.Rules[number(t, name)] != nil {
					t.Errorf("%s in the set", name)
				}
			}
			for _, r := range p.Rules {
				got := *r
				got.Expr = ""
				if got != c.rule {
					t.Errorf("rule = %+v, want %+v", got, c.rule)
				}
				break
			}
		})
	}
}

// A later expression replaces an earlier one for the calls both name.
func TestLaterExpressionWins(t *testing.T) {
	p, err := Parse([]string{"inject=write,read:error=EIO", "inject=write:error=ENOSPC"}, syscalls.Host())
	if err != nil {
		t.Fatal(err)
	}
	if e := p.Rules[number(t, "write")].Errno; e != 28 {
		t.Errorf("write: errno %d, want 28 (ENOSPC)", e)
	}
	if e := p.Rules[number(t, "read")].Errno; e != 5 {
		t.Errorf("read: errno %d, want 5 (EIO)", e)
	}
}

// The calls when= injects, as strace's tamper_with_syscall_entering counts.
func TestWhenInjectsTheCallsStraceDoes(t *testing.T) {
	cases := []struct {
		when string
		want []int // of calls 1..20
	}{
		{"1", []int{1}},
		{"3", []int{3}},
		{"3+", []int{3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20}},
		{"3+5", []int{3, 8, 13, 18}},
		{"2..4", []int{2, 3, 4}},
		{"2..11+3", []int{2, 5, 8, 11}},
		{"2..12+3", []int{2, 5, 8, 11}},
		{"5..5", []int{5}},
	}
	for _, c := range cases {
		p, err := Parse([]string{"inject=write:error=EIO:when=" + c.when}, syscalls.Host())
		if err != nil {
			t.Fatal(err)
		}
		r := p.Rules[number(t, "write")]
		w := when{r.First, r.Last, r.Step}
		var got []int
		for call := 1; call <= 20; call++ {
			if w.next() {
				got = append(got, call)
			}
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("when=%s injects calls %v, want %v", c.when, got, c.want)
		}
	}
}

func TestNotifyOnlyWhereACallNeedsADecision(t *testing.T) {
	cases := []struct {
		exprs  []string
		notify bool
	}{
		{[]string{"inject=write:error=ENOSPC"}, false},
		{[]string{"inject=openat,write:error=ENOSPC", "inject=connect:error=ECONNREFUSED"}, false},
		{[]string{"inject=write:error=ENOSPC:when=2+"}, true},
		{[]string{"inject=write:retval=1"}, true},
		{[]string{"inject=write:error=EIO:signal=USR1"}, true},
		{[]string{"inject=write:error=EIO:delay_enter=1ms"}, true},
		{[]string{"inject=futex:error=EAGAIN"}, true}, // the child's Go runtime calls it before exec
		{[]string{"inject=execve:error=ENOENT"}, true},
	}
	for _, c := range cases {
		p, err := Parse(c.exprs, syscalls.Host())
		if err != nil {
			t.Fatal(err)
		}
		if got := p.Notify(); got != c.notify {
			t.Errorf("%v: Notify() = %v, want %v", c.exprs, got, c.notify)
		}
		if _, err := p.program(c.notify); err != nil {
			t.Errorf("%v: %v", c.exprs, err)
		}
	}
	all, err := Parse([]string{"inject=all:error=EIO"}, syscalls.Host())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := all.program(true); err != nil {
		t.Errorf("a filter for every syscall: %v", err)
	}
}
