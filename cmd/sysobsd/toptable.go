package main

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/zap"
	"golang.org/x/term"

	"github.com/sysobsd/sysobsd/internal/config"
	"github.com/sysobsd/sysobsd/internal/filter"
	"github.com/sysobsd/sysobsd/internal/loader"
	"github.com/sysobsd/sysobsd/internal/syscalls"
	"github.com/sysobsd/sysobsd/internal/tally"
)

// topSample is every process name's totals at one moment.
type topSample map[string]*topTotals

type topTotals struct {
	calls, errors, seconds float64
	bySyscall              map[string]float64 // seconds
}

func (s topSample) add(comm string) *topTotals {
	t := s[comm]
	if t == nil {
		t = &topTotals{bySyscall: make(map[string]float64)}
		s[comm] = t
	}
	return t
}

// sampleFromDaemon reads a running daemon's /metrics.
func sampleFromDaemon(addr string) func() (topSample, error) {
	url := addr
	if !strings.Contains(url, "://") {
		url = "http://" + url
	}
	url = strings.TrimSuffix(url, "/") + "/metrics"
	shown := redactURL(url) // messages never show a basic-auth password
	client := &http.Client{Timeout: 5 * time.Second}
	return func() (topSample, error) {
		resp, err := client.Get(url)
		if err != nil {
			var uerr *neturl.Error
			if errors.As(err, &uerr) {
				err = uerr.Err // its URL shows the user name; shown follows
			}
			return nil, fmt.Errorf("top: get %s: %w; is sysobsd serving there?", shown, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("top: %s: %s", shown, resp.Status)
		}
		var body bytes.Buffer
		if _, err := body.ReadFrom(resp.Body); err != nil {
			return nil, err
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		families, err := parser.TextToMetricFamilies(&body)
		if err != nil {
			return nil, fmt.Errorf("top: parse %s: %w", shown, err)
		}
		s := make(topSample)
		for name, mf := range families {
			for _, m := range mf.GetMetric() {
				var comm, sc string
				for _, l := range m.GetLabel() {
					switch l.GetName() {
					case "comm":
						comm = l.GetValue()
					case "syscall":
						sc = l.GetValue()
					}
				}
				v := m.GetCounter().GetValue()
				switch name {
				case "sysobsd_syscalls_total":
					s.add(comm).calls += v
				case "sysobsd_syscall_errors_total":
					s.add(comm).errors += v
				case "sysobsd_syscall_seconds_total":
					t := s.add(comm)
					t.seconds += v
					t.bySyscall[sc] += v
				}
			}
		}
		return s, nil
	}
}

// sampleFromEngine reads this process's own programs.
func sampleFromEngine(engine *tally.Engine) func() (topSample, error) {
	names := syscalls.Host()
	return func() (topSample, error) {
		snap, err := engine.Snapshot(context.Background())
		if err != nil {
			return nil, err
		}
		s := make(topSample)
		for k, v := range snap.Calls {
			t := s.add(k.Comm)
			t.calls += float64(v.Calls)
			t.seconds += float64(v.NS) / 1e9
			t.bySyscall[names.Name(syscalls.ABI(k.ABI), uint32(k.NR))] += float64(v.NS) / 1e9
		}
		for k, n := range snap.Errors {
			s.add(k.Comm).errors += float64(n)
		}
		return s, nil
	}
}

type topRow struct {
	comm                   string
	calls, errors, seconds float64 // per second
	topSyscall             string
}

// topRows turns two samples into per-second rates, sorted by key.
func topRows(prev, cur topSample, elapsed time.Duration, sortBy string) []topRow {
	var rows []topRow
	for comm, c := range cur {
		p := prev[comm]
		if p == nil {
			p = &topTotals{}
		}
		r := topRow{
			comm:    comm,
			calls:   (c.calls - p.calls) / elapsed.Seconds(),
			errors:  (c.errors - p.errors) / elapsed.Seconds(),
			seconds: (c.seconds - p.seconds) / elapsed.Seconds(),
		}
		best := 0.0
		for sc, v := range c.bySyscall {
			if d := v - p.bySyscall[sc]; d > best {
				best, r.topSyscall = d, sc
			}
		}
		if r.calls > 0 || r.errors > 0 {
			rows = append(rows, r)
		}
	}
	sortRows(rows, sortBy)
	return rows
}

func sortRows(rows []topRow, sortBy string) {
	key := func(r topRow) float64 {
		switch sortBy {
		case "calls":
			return r.calls
		case "errors":
			return r.errors
		}
		return r.seconds
	}
	slices.SortFunc(rows, func(a, b topRow) int { return cmp.Or(cmp.Compare(key(b), key(a)), cmp.Compare(a.comm, b.comm)) })
}

func renderTop(w io.Writer, rows []topRow, sortBy string, limit int, clear bool) {
	var b strings.Builder
	if clear {
		b.WriteString("\x1b[H\x1b[2J")
	}
	fmt.Fprintf(&b, "sysobsd top — sorted by %s (t: time, c: calls, e: errors, q: quit)\n\n", sortBy)
	fmt.Fprintf(&b, "%-16s %10s %12s %10s  %s\n", "COMM", "SYSCALL %", "CALLS/s", "ERRORS/s", "TOP SYSCALL")
	for i, r := range rows {
		if i == limit {
			break
		}
		fmt.Fprintf(&b, "%-16s %9.1f%% %12.0f %10.0f  %s\n", r.comm, 100*r.seconds, r.calls, r.errors, r.topSyscall)
	}
	io.WriteString(w, b.String())
}

func runTopTable(opts options, cfg config.Config, stdout io.Writer, log *zap.Logger) error {
	o := opts.top
	if err := oneOf("sort", o.sort, "time", "calls", "errors"); err != nil {
		return err
	}
	var sample func() (topSample, error)
	if o.daemon != "" {
		sample = sampleFromDaemon(o.daemon)
	} else {
		f, err := filter.Compile(cfg.Filters, config.Events{}, syscalls.Host(), nil)
		if err != nil {
			return err
		}
		loadOpts := loader.DefaultOptions()
		loadOpts.KernelBTF = opts.kernelBTF
		loadOpts.Prepare = func(p *loader.Probes) error { return filter.Apply(&p.Maps, f, procRoot) }
		probes, err := loader.Load(loadOpts, log)
		if err != nil {
			return err
		}
		defer probes.Close()
		engine, err := tally.NewEngine(&probes.Maps, procRoot, tally.EngineOptions{Labels: tally.LabelSet(tally.LabelComm), Limits: tally.Limits{}}, log)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go engine.Run(ctx)
		sample = sampleFromEngine(engine)
	}

	keys := make(chan byte, 8)
	interactive := term.IsTerminal(int(os.Stdin.Fd())) && term.IsTerminal(int(os.Stdout.Fd()))
	if interactive {
		if old, err := term.MakeRaw(int(os.Stdin.Fd())); err == nil {
			defer term.Restore(int(os.Stdin.Fd()), old)
			go func() {
				var b [1]byte
				for {
					if n, err := os.Stdin.Read(b[:]); err != nil || n == 0 {
						return
					}
					keys <- b[0]
				}
			}()
		}
	}
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(signals)

	prev, err := sample()
	if err != nil {
		return err
	}
	last := time.Now()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	sortBy := o.sort
	var rows []topRow
	for shown := 0; o.count == 0 || shown < o.count; {
		select {
		case <-signals:
			return nil
		case k := <-keys:
			switch k {
			case 'q', 3: // q or Ctrl-C in raw mode
				return nil
			case 't':
				sortBy = "time"
			case 'c':
				sortBy = "calls"
			case 'e':
				sortBy = "errors"
			}
			sortRows(rows, sortBy)
		case now := <-tick.C:
			cur, err := sample()
			if err != nil {
				return err
			}
			rows = topRows(prev, cur, now.Sub(last), sortBy)
			prev, last = cur, now
			shown++
		}
		renderTop(stdout, rows, sortBy, 25, interactive)
	}
	return nil
}

// redactURL is raw with its password replaced, for messages.
func redactURL(raw string) string {
	u, err := neturl.Parse(raw)
	if err != nil {
		return "the --daemon address"
	}
	return u.Redacted()
}
