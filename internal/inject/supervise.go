package inject

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sysobsd/sysobsd/internal/syscalls"
)

// The kernel's struct seccomp_notif, seccomp_data and seccomp_notif_resp
// (include/uapi/linux/seccomp.h); x/sys/unix has the ioctls, not the types.
type seccompData struct {
	Nr   int32
	Arch uint32
	IP   uint64
	Args [6]uint64
}

type seccompNotif struct {
	ID    uint64
	Pid   uint32
	Flags uint32
	Data  seccompData
}

type seccompNotifResp struct {
	ID    uint64
	Val   int64
	Error int32
	Flags uint32
}

// when is strace's per-call counter of one syscall in one thread
// (tamper_with_syscall_entering): strace keeps a copy of the rules per
// traced thread (tcb) and counts each syscall in it separately; so do we,
// per thread id.
type when struct{ first, last, step uint16 }

// next counts a call and reports whether it is injected.
func (w *when) next() bool {
	if w.first == 0 || w.last == 0 {
		return false
	}
	if w.last != lastInf {
		w.last--
	}
	w.first--
	if w.first != 0 {
		return false
	}
	w.first = w.step
	return true
}

type callKey struct {
	tid uint32
	nr  uint32
}

// Supervisor answers the seccomp notifications of one command: it lets
// every call through until the command's execve, then counts each call of
// the plan per thread and injects those when= chooses.
type Supervisor struct {
	plan   *Plan
	pid    int
	stop   chan struct{}
	done   chan struct{}
	err    error
	execve uint32

	mu       sync.Mutex
	injected map[string]uint64 // by syscall name, for tests and reports
}

// Supervise starts answering pid's notifications; Finish ends it.
func Supervise(pid int, plan *Plan) *Supervisor {
	execve, _ := syscalls.Host().Number(syscalls.Native, "execve")
	s := &Supervisor{plan: plan, pid: pid, stop: make(chan struct{}), done: make(chan struct{}), execve: execve, injected: map[string]uint64{}}
	go func() {
		defer close(s.done)
		s.err = s.run()
	}()
	return s
}

// Finish waits, once the command has exited, until no process holds the
// filter any more (its children may outlive it, as under strace -f), and
// returns what went wrong, if anything.
func (s *Supervisor) Finish() error {
	close(s.stop)
	<-s.done
	return s.err
}

// Injected returns how many calls were injected, by syscall name.
func (s *Supervisor) Injected() map[string]uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]uint64, len(s.injected))
	for k, v := range s.injected {
		out[k] = v
	}
	return out
}

func (s *Supervisor) run() error {
	listener, err := s.takeListener()
	if err != nil || listener < 0 {
		return err
	}
	defer unix.Close(listener)
	counters := map[callKey]*when{}
	armed := false
	var pending sync.WaitGroup
	defer pending.Wait()
	for {
		fds := []unix.PollFd{{Fd: int32(listener), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, -1); err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return fmt.Errorf("inject: poll the seccomp listener: %w", err)
		}
		if fds[0].Revents&unix.POLLIN == 0 {
			return nil // POLLHUP: no process holds the filter any more
		}
		var n seccompNotif
		if err := ioctl(listener, unix.SECCOMP_IOCTL_NOTIF_RECV, unsafe.Pointer(&n)); err != nil {
			if errors.Is(err, unix.EINTR) || errors.Is(err, unix.ENOENT) {
				continue // the caller died before we read its call
			}
			return fmt.Errorf("inject: receive a seccomp notification: %w", err)
		}
		nr := uint32(n.Data.Nr)
		// Until the command's execve, the calls are sysobsd's own child's.
		if !armed && nr == s.execve {
			armed = true
		}
		rule := s.plan.Rules[nr]
		if !armed || rule == nil {
			respond(listener, n.ID, nil)
			continue
		}
		key := callKey{n.Pid, nr}
		c := counters[key]
		if c == nil {
			c = &when{rule.First, rule.Last, rule.Step}
			counters[key] = c
		}
		if !c.next() {
			respond(listener, n.ID, nil)
			continue
		}
		s.mu.Lock()
		s.injected[syscalls.Host().Name(syscalls.Native, nr)]++
		s.mu.Unlock()
		if rule.Signal != 0 {
			// Queued now, delivered as the call returns: strace too sends it
			// at the call's entry.
			_ = unix.Tgkill(tgidOf(int(n.Pid)), int(n.Pid), rule.Signal)
		}
		if delay := rule.DelayEnter + rule.DelayExit; delay > 0 {
			pending.Add(1)
			go func() {
				defer pending.Done()
				time.Sleep(delay)
				respond(listener, n.ID, rule)
			}()
			continue
		}
		respond(listener, n.ID, rule)
	}
}

// respond answers a call: let it through (rule nil, or a rule that only
// signals or delays), fail it with the rule's errno, or return its retval
// without running it.
func respond(listener int, id uint64, rule *Rule) {
	resp := seccompNotifResp{ID: id}
	switch {
	case rule != nil && rule.Errno != 0:
		resp.Error = -int32(rule.Errno)
	case rule != nil && rule.HasRetval:
		resp.Val = int64(rule.Retval)
	default:
		resp.Flags = unix.SECCOMP_USER_NOTIF_FLAG_CONTINUE
	}
	// ENOENT: the caller was killed meanwhile; nothing to answer.
	_ = ioctl(listener, unix.SECCOMP_IOCTL_NOTIF_SEND, unsafe.Pointer(&resp))
}

func ioctl(fd int, req uintptr, arg unsafe.Pointer) error {
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), req, uintptr(arg)); e != 0 {
		return e
	}
	return nil
}

// takeListener copies the child's listener fd into this process once the
// child has installed its filter: the child cannot send it (a sendmsg could
// be one of the calls injected), so we look for it in /proc/PID/fd and take
// it with pidfd_getfd (Linux ≥5.6). -1 when the child ended without one.
func (s *Supervisor) takeListener() (int, error) {
	pidfd, err := unix.PidfdOpen(s.pid, 0)
	if err != nil {
		return -1, fmt.Errorf("inject: pidfd_open %d: %w; needs Linux ≥5.6", s.pid, err)
	}
	defer unix.Close(pidfd)
	dir := "/proc/" + strconv.Itoa(s.pid) + "/fd"
	for {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if link, _ := os.Readlink(dir + "/" + e.Name()); link == "anon_inode:seccomp notify" {
				target, _ := strconv.Atoi(e.Name())
				fd, err := unix.PidfdGetfd(pidfd, target, 0)
				if err != nil {
					return -1, fmt.Errorf("inject: pidfd_getfd: %w; sysobsd must be allowed to ptrace its child (kernel.yama.ptrace_scope ≤1)", err)
				}
				return fd, nil
			}
		}
		select {
		case <-s.stop:
			return -1, nil // the child exited before installing a filter
		case <-time.After(time.Millisecond):
		}
	}
}

// tgidOf reads a thread's process id; tgkill needs both.
func tgidOf(tid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(tid) + "/status")
	if err != nil {
		return tid
	}
	const key = "\nTgid:\t"
	for i := 0; i+len(key) < len(b); i++ {
		if string(b[i:i+len(key)]) == key {
			j := i + len(key)
			k := j
			for k < len(b) && b[k] >= '0' && b[k] <= '9' {
				k++
			}
			if n, err := strconv.Atoi(string(b[j:k])); err == nil {
				return n
			}
		}
	}
	return tid
}
