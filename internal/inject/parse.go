package inject

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sysobsd/sysobsd/internal/syscalls"
)

// lastInf is strace's INJECT_LAST_INF: when= without an end.
const lastInf = math.MaxUint16

// maxErrno is the kernel's MAX_ERRNO: the largest error a call can return.
const maxErrno = 4095

// Rule is one -e inject= expression, as strace's struct inject_opts holds it.
type Rule struct {
	Expr string // as the user wrote it, for messages
	// when=: inject the calls First, First+Step, ... up to Last (lastInf: no
	// end); Step 0 injects First only. strace's default is 1..∞+1: every call.
	First, Last, Step uint16
	Errno             uint16 // error=; 0 when not given
	Retval            uint64 // retval=, when HasRetval
	HasRetval         bool
	Signal            syscall.Signal // signal=; 0 when not given
	DelayEnter        time.Duration
	DelayExit         time.Duration
}

// everyCall is true when the rule injects every call the same way, so that
// a SECCOMP_RET_ERRNO filter can do it with no per-call decision.
func (r *Rule) everyCall() bool {
	return r.First == 1 && r.Last == lastInf && r.Step == 1 &&
		!r.HasRetval && r.Signal == 0 && r.DelayEnter == 0 && r.DelayExit == 0
}

// Plan is every -e inject= of one command: which rule each native syscall
// number follows. A later expression replaces an earlier one for the calls
// both name, as in strace.
type Plan struct {
	Exprs []string
	Rules map[uint32]*Rule
}

// Parse reads strace's -e inject= expressions (the "inject=" prefix is
// required, as strace's -e needs it). Errors are one line naming the part
// that is wrong.
func Parse(exprs []string, table *syscalls.Table) (*Plan, error) {
	if len(exprs) == 0 {
		return nil, errors.New("no -e inject= expression given")
	}
	p := &Plan{Exprs: exprs, Rules: map[uint32]*Rule{}}
	for _, expr := range exprs {
		nrs, rule, err := parseExpr(expr, table)
		if err != nil {
			return nil, fmt.Errorf("-e %s: %w", expr, err)
		}
		for _, nr := range nrs {
			p.Rules[nr] = rule
		}
	}
	return p, nil
}

const keysHelp = "error=, retval=, when=, signal=, delay_enter=, delay_exit="

func parseExpr(expr string, table *syscalls.Table) ([]uint32, *Rule, error) {
	body, ok := strings.CutPrefix(expr, "inject=")
	if !ok {
		qual, _, _ := strings.Cut(expr, "=")
		return nil, nil, fmt.Errorf("%q is not supported: only inject= expressions (e.g. -e inject=write:error=ENOSPC)", qual)
	}
	set, tokens, _ := strings.Cut(body, ":")
	if set == "" {
		return nil, nil, errors.New("no syscall set before the first ':' (e.g. inject=openat:error=ENOENT)")
	}
	rule := &Rule{Expr: expr, First: 1, Last: lastInf, Step: 1}
	seen := map[string]bool{}
	for _, token := range strings.Split(tokens, ":") {
		if token == "" && tokens == "" {
			break
		}
		key, value, hasValue := strings.Cut(token, "=")
		if !hasValue {
			return nil, nil, fmt.Errorf("%q: expected KEY=VALUE with KEY one of %s", token, keysHelp)
		}
		if seen[key] {
			return nil, nil, fmt.Errorf("%s= given twice", key)
		}
		seen[key] = true
		if err := rule.set(key, value); err != nil {
			return nil, nil, err
		}
	}
	if seen["error"] && seen["retval"] {
		return nil, nil, errors.New("error= and retval= exclude each other")
	}
	if rule.Errno == 0 && !rule.HasRetval && rule.Signal == 0 && rule.DelayEnter == 0 && rule.DelayExit == 0 && !seen["delay_enter"] && !seen["delay_exit"] {
		return nil, nil, fmt.Errorf("nothing to inject: give one of error=, retval=, signal=, delay_enter=, delay_exit=")
	}
	nrs, err := qualify(set, table)
	if err != nil {
		return nil, nil, err
	}
	return nrs, rule, nil
}

func (r *Rule) set(key, value string) error {
	var err error
	switch key {
	case "when":
		err = r.parseWhen(value)
	case "error":
		var n uint64
		n, err = parseErrno(value)
		r.Errno = uint16(n)
	case "retval":
		r.Retval, err = strconv.ParseUint(value, 0, 64)
		if err != nil {
			err = fmt.Errorf("retval=%s: not a number from 0 to %d", value, uint64(math.MaxUint64))
		}
		r.HasRetval = true
	case "signal":
		r.Signal, err = parseSignal(value)
	case "delay_enter":
		r.DelayEnter, err = parseDelay(key, value)
	case "delay_exit":
		r.DelayExit, err = parseDelay(key, value)
	case "syscall", "poke_enter", "poke_exit":
		err = fmt.Errorf("%s= is not supported: a seccomp filter can fail, answer or delay a call, not change it", key)
	default:
		err = fmt.Errorf("unknown key %q; keys: %s", key, keysHelp)
	}
	return err
}

// parseWhen follows strace's parse_inject_token: FIRST, FIRST+, FIRST+STEP,
// FIRST..LAST, FIRST..LAST+STEP, numbers from 1 to 65535, LAST below 65535.
func (r *Rule) parseWhen(value string) error {
	bad := func(why string) error {
		return fmt.Errorf("when=%s: %s; the forms are N, N+, N+STEP, N..M, N..M+STEP", value, why)
	}
	number := func(s, what string) (uint16, error) {
		n, err := strconv.ParseUint(s, 10, 16)
		if err != nil || n < 1 || s[0] == '+' {
			return 0, bad(what + " must be a number from 1 to 65535")
		}
		return uint16(n), nil
	}
	rangePart, stepPart, hasStep := strings.Cut(value, "+")
	firstPart, lastPart, hasLast := strings.Cut(rangePart, "..")
	first, err := number(firstPart, "the first call")
	if err != nil {
		return err
	}
	r.First, r.Last, r.Step = first, lastInf, 0
	if hasLast {
		last, err := number(lastPart, "the last call")
		if err != nil {
			return err
		}
		if last < first || last == lastInf {
			return bad("the last call must be at least the first and below 65535")
		}
		r.Last, r.Step = last, 1
	}
	if hasStep {
		r.Step = 1
		if stepPart != "" {
			if r.Step, err = number(stepPart, "the step"); err != nil {
				return err
			}
		}
	}
	return nil
}

func parseErrno(value string) (uint64, error) {
	if n, err := strconv.ParseUint(value, 10, 64); err == nil {
		if n < 1 || n > maxErrno {
			return 0, fmt.Errorf("error=%s: out of range; an errno is 1 to %d, or a name like ENOSPC", value, maxErrno)
		}
		return n, nil
	}
	n, ok := syscalls.ErrnoNumber(value)
	if !ok || n < 1 || n > maxErrno {
		return 0, fmt.Errorf("error=%s: unknown errno; give a name like ENOSPC or a number from 1 to %d", value, maxErrno)
	}
	return uint64(n), nil
}

// parseSignal takes SIGUSR1, USR1 or a number from 1 to 64, as strace does.
func parseSignal(value string) (syscall.Signal, error) {
	if n, err := strconv.ParseUint(value, 10, 8); err == nil && n >= 1 && n <= 64 {
		return syscall.Signal(n), nil
	}
	name := strings.ToUpper(value)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("signal=%s: unknown signal; give a name like SIGUSR1 or a number from 1 to 64", value)
}

// parseDelay follows strace's parse_ts: a number, microseconds unless a
// suffix s, ms, us or ns says otherwise.
func parseDelay(key, value string) (time.Duration, error) {
	digits := strings.TrimRightFunc(value, func(r rune) bool { return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' })
	unit := map[string]time.Duration{"": time.Microsecond, "s": time.Second, "ms": time.Millisecond, "us": time.Microsecond, "ns": time.Nanosecond}[strings.ToLower(value[len(digits):])]
	n, err := strconv.ParseFloat(digits, 64)
	if err != nil || unit == 0 || n < 0 || math.IsInf(n, 0) || n*float64(unit) > float64(math.MaxInt64) {
		return 0, fmt.Errorf("%s=%s: not a time; give a number of microseconds or one with a unit: 10ms, 1.5s, 200us, 500ns", key, value)
	}
	return time.Duration(n * float64(unit)), nil
}

// qualify turns strace's syscall set into native syscall numbers: names,
// classes (%file, file, ...), numbers, /regex, all, none, a leading ! for
// the complement and ? before a name that may be unknown.
func qualify(set string, table *syscalls.Table) ([]uint32, error) {
	invert := false
	for strings.HasPrefix(set, "!") {
		invert = !invert
		set = set[1:]
	}
	all := table.Names(syscalls.Native)
	chosen := map[uint32]bool{}
	add := func(name string) bool {
		nr, ok := table.Number(syscalls.Native, name)
		if ok {
			chosen[nr] = true
		}
		return ok
	}
	switch set {
	case "all":
		invert = !invert
	case "none":
	default:
		for _, token := range strings.Split(set, ",") {
			if err := qualifyToken(token, table, all, add); err != nil {
				return nil, err
			}
		}
	}
	var nrs []uint32
	for _, name := range all {
		nr, _ := table.Number(syscalls.Native, name)
		if chosen[nr] != invert {
			nrs = append(nrs, nr)
		}
	}
	slices.Sort(nrs)
	nrs = slices.Compact(nrs)
	if len(nrs) == 0 {
		return nil, fmt.Errorf("the syscall set %q names no syscall", set)
	}
	return nrs, nil
}

func qualifyToken(token string, table *syscalls.Table, all []string, add func(string) bool) error {
	optional := false
	for strings.HasPrefix(token, "?") {
		optional = true
		token = token[1:]
	}
	found := false
	switch {
	case token == "":
		return errors.New("empty syscall name in the set")
	case token[0] >= '0' && token[0] <= '9':
		n, err := strconv.ParseUint(token, 10, 32)
		if err != nil {
			return fmt.Errorf("syscall number %q: not a number", token)
		}
		found = add(table.Name(syscalls.Native, uint32(n)))
	case token[0] == '/':
		re, err := regexp.Compile(token[1:])
		if err != nil {
			return fmt.Errorf("regular expression %q: %w", token[1:], err)
		}
		for _, name := range all {
			if re.MatchString(name) {
				found = add(name) || found
			}
		}
	default:
		if class, ok := lookupClass(token); ok {
			for _, name := range class {
				add(name) // a class may list calls this architecture lacks
			}
			return nil
		}
		found = add(token)
	}
	if !found && !optional {
		return fmt.Errorf("unknown syscall %q (or a class this architecture lacks); classes: %s", token, strings.Join(classNames(), ", "))
	}
	return nil
}

// lookupClass finds a class by name, case-insensitively as strace does.
func lookupClass(name string) ([]string, bool) {
	for class, calls := range straceClasses {
		if strings.EqualFold(class, name) {
			return calls, true
		}
	}
	return nil, false
}

func classNames() []string {
	names := make([]string, 0, len(straceClasses))
	for class := range straceClasses {
		if strings.HasPrefix(class, "%") {
			names = append(names, class)
		}
	}
	slices.Sort(names)
	return names
}
