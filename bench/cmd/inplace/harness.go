package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"go.uber.org/zap"

	"github.com/sysobsd/sysobsd/bench/floor"
	"github.com/sysobsd/sysobsd/bench/internal/measure"
	"github.com/sysobsd/sysobsd/internal/config"
	"github.com/sysobsd/sysobsd/internal/counting"
	"github.com/sysobsd/sysobsd/internal/filter"
	"github.com/sysobsd/sysobsd/internal/loader"
	"github.com/sysobsd/sysobsd/internal/syscalls"
)

// readyLine is what a harness prints once its variant is loaded, hooks off.
const readyLine = "ready"

// The variants it can switch in place, named as in the other tools.
var knownVariants = []string{"floor", "floor-exit", "floor-clock", "sysobsd", "sysobsd-nolat", "sysobsd-exact"}

type variant struct {
	name, title string
	// serveAs is the name the harness loads; path the harness binary
	// ("": this one).
	serveAs, path string
}

// chosenVariants are the -variants, then the -alt builds
// (NAME=PATH[:VARIANT],..., VARIANT one of sysobsd's, sysobsd by default).
func chosenVariants(list, alt string) ([]variant, error) {
	var out []variant
	for _, name := range strings.FieldsFunc(list, func(r rune) bool { return r == ' ' || r == ',' }) {
		if !slices.Contains(knownVariants, name) {
			return nil, fmt.Errorf("unknown variant %q (known: %s)", name, strings.Join(knownVariants, " "))
		}
		out = append(out, variant{name: name, title: measure.Titles[name], serveAs: name})
	}
	for _, spec := range strings.FieldsFunc(alt, func(r rune) bool { return r == ',' }) {
		name, path, ok := strings.Cut(spec, "=")
		path, as, _ := strings.Cut(path, ":")
		if as == "" {
			as = "sysobsd"
		}
		if !ok || name == "" || path == "" {
			return nil, fmt.Errorf("-alt %q: want NAME=PATH[:VARIANT] (PATH an inplace binary of that build)", spec)
		}
		if !strings.HasPrefix(as, "sysobsd") || !slices.Contains(knownVariants, as) {
			return nil, fmt.Errorf("-alt %q: VARIANT is one of sysobsd, sysobsd-nolat, sysobsd-exact", spec)
		}
		if slices.Contains(knownVariants, "sysobsd-"+name) {
			return nil, fmt.Errorf("-alt %q: sysobsd-%s is a known variant; name the build otherwise", spec, name)
		}
		out = append(out, variant{name: "sysobsd-" + name, serveAs: as, path: path,
			title: measure.BuildTitle(name, as)})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no variant chosen")
	}
	return out, nil
}

// hookSwitch switches a loaded variant's syscall hooks.
type hookSwitch interface {
	set(on bool) error
	close() error
}

// serve loads the variant, says readyLine, and answers "on" and "off" with
// "ok" (or "error: ...", and returns) until in closes.
func serve(name string, in io.Reader, out io.Writer) error {
	sw, err := load(name)
	if err != nil {
		return err
	}
	defer sw.close()
	fmt.Fprintln(out, readyLine)
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		var err error
		switch sc.Text() {
		case "on":
			err = sw.set(true)
		case "off":
			err = sw.set(false)
		default:
			err = fmt.Errorf("unknown command %q (on, off)", sc.Text())
		}
		if err != nil {
			fmt.Fprintln(out, "error:", err)
			return err
		}
		fmt.Fprintln(out, "ok")
	}
	return sc.Err()
}

func load(name string) (hookSwitch, error) {
	switch name {
	case "floor":
		return loadFloor(floor.Empty)
	case "floor-exit":
		return loadFloor(floor.ExitOnly)
	case "floor-clock":
		return loadFloor(floor.ClockOnly)
	case "sysobsd":
		return loadSysobsd(func(*config.Config) {})
	case "sysobsd-nolat":
		return loadSysobsd(func(c *config.Config) { c.Latency = config.LatencyOff })
	case "sysobsd-exact":
		return loadSysobsd(func(c *config.Config) { c.Latency = config.LatencyEvery })
	}
	return nil, fmt.Errorf("unknown variant %q", name)
}

// floorSwitch attaches the floor programs at "on" and detaches them at
// "off": they touch no map worth keeping.
type floorSwitch struct {
	mode     floor.Mode
	attached *floor.Attached
}

func loadFloor(mode floor.Mode) (*floorSwitch, error) {
	s := &floorSwitch{mode: mode}
	if err := s.set(true); err != nil { // fail here, not in the first round
		return nil, err
	}
	return s, s.set(false)
}

func (s *floorSwitch) set(on bool) error {
	if !on {
		return s.close()
	}
	if s.attached != nil {
		return nil
	}
	a, err := floor.Attach(s.mode)
	s.attached = a
	return err
}

func (s *floorSwitch) close() error {
	if s.attached == nil {
		return nil
	}
	err := s.attached.Close()
	s.attached = nil
	return err
}

// sysobsdSwitch is sysobsd's programs and maps loaded as the daemon loads
// them (counting.Start with the embedded default config and its filter),
// without the tally engine: the engines of a dozen loaded instances, folding
// every second, slowed the loop on its own CPU by half (one engine did not
// show); what the daemon's work costs is bench/cmd/overhead's tracer CPU.
// Instead, each "off" frees the entries of processes gone (freeDead).
type sysobsdSwitch struct{ c *counting.Counting }

func loadSysobsd(change func(*config.Config)) (*sysobsdSwitch, error) {
	cfg := config.Default()
	change(&cfg)
	f, err := filter.Compile(cfg.Filters, cfg.Events, syscalls.Host(), nil) // the default has no cgroup filter
	if err != nil {
		return nil, err
	}
	c, err := counting.Start(counting.Options{Config: cfg, Filter: f}, zap.NewNop())
	if err != nil {
		return nil, err
	}
	s := &sysobsdSwitch{c: c}
	if err := s.set(false); err != nil {
		c.Close()
		return nil, err
	}
	return s, nil
}

func (s *sysobsdSwitch) set(on bool) error {
	if err := s.c.Probes.SetSyscallHooks(on); err != nil || on {
		return err
	}
	return s.freeDead()
}

// freeDead deletes the per-process call and error entries of processes
// gone, as the daemon's folds do every second: kept, the loop processes of
// hundreds of runs would fill the maps by the end, as no host's maps are.
func (s *sysobsdSwitch) freeDead() error {
	return errors.Join(deleteDead(s.c.Probes.Stats(), func(k loader.SyscallKey) uint32 { return k.Tgid }),
		deleteDead(s.c.Probes.Errors(), func(k loader.ErrnoKey) uint32 { return k.Tgid }))
}

func deleteDead[K comparable, V any](t interface {
	Read(func(K, V)) error
	Delete([]K) (int, error)
}, tgidOf func(K) uint32) error {
	var dead []K
	err := t.Read(func(k K, _ V) {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", tgidOf(k))); err != nil {
			dead = append(dead, k)
		}
	})
	if err != nil {
		return err
	}
	_, err = t.Delete(dead)
	return err
}

func (s *sysobsdSwitch) close() error { return s.c.Close() }
