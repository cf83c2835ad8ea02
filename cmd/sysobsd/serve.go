package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"reflect"
	"runtime/debug"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/common/version"
	"go.uber.org/zap"

	"github.com/sysobsd/sysobsd/internal/cgroups"
	"github.com/sysobsd/sysobsd/internal/config"
	"github.com/sysobsd/sysobsd/internal/filter"
	"github.com/sysobsd/sysobsd/internal/loader"
	"github.com/sysobsd/sysobsd/internal/metrics"
	"github.com/sysobsd/sysobsd/internal/notable"
	"github.com/sysobsd/sysobsd/internal/privilege"
	"github.com/sysobsd/sysobsd/internal/server"
	"github.com/sysobsd/sysobsd/internal/syscalls"
	"github.com/sysobsd/sysobsd/internal/tally"
)

const procRoot = "/proc"

// settings are what a config means for a running daemon; a SIGHUP swaps them.
type settings struct {
	labels tally.LabelSet
	limits tally.Limits
	filter *filter.Filter
}

func settingsFrom(cfg config.Config, resolver *cgroups.Resolver) (settings, error) {
	var s settings
	for _, name := range cfg.Labels {
		s.labels |= tally.LabelSet(tally.LabelNames[name])
	}
	needsCgroups := s.labels&tally.LabelSet(tally.LabelUnit|tally.LabelContainer|tally.LabelCgroup) != 0 ||
		len(cfg.Filters.Include.Cgroups)+len(cfg.Filters.Exclude.Cgroups) > 0
	if needsCgroups && resolver == nil {
		return s, errors.New("config asks for unit, container or cgroup labels or cgroup filters, but no cgroup2 is mounted; mount cgroup2 (mount -t cgroup2 none /sys/fs/cgroup) or drop them from the config")
	}
	s.limits = tally.Limits{MaxSeries: cfg.Cardinality.MaxSeries, IdleTimeout: cfg.Cardinality.IdleTimeout}
	f, err := filter.Compile(cfg.Filters, cfg.Events, syscalls.Host(), resolver)
	if err != nil {
		return s, err
	}
	s.filter = f
	return s, nil
}

func serve(opts options, cfg config.Config, log *zap.Logger) error {
	// From the start: a SIGHUP's default action would kill a daemon still
	// starting up; one that arrives early is handled once serving.
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(signals)
	var resolver *cgroups.Resolver
	if mount, err := cgroups.FindMount(procRoot + "/self/mountinfo"); err == nil {
		resolver = cgroups.NewResolver(mount)
	} else {
		log.Warn("no cgroup2: unit, container and cgroup labels are unavailable", zap.Error(err))
	}
	current, err := settingsFrom(cfg, resolver)
	if err != nil {
		return err
	}
	for _, path := range current.filter.Unresolved {
		log.Warn("filtered cgroup does not exist (yet); it is looked up again at SIGHUP", zap.String("cgroup", path))
	}

	loadOpts := loader.DefaultOptions()
	loadOpts.Latency = cfg.Latency
	loadOpts.StatsEntries = cfg.Maps.StatsEntries
	loadOpts.ErrorsEntries = cfg.Maps.ErrorsEntries
	loadOpts.GroupStatsEntries = cfg.Maps.GroupStatsEntries
	loadOpts.GroupErrorsEntries = cfg.Maps.GroupErrorsEntries
	loadOpts.RingBufferBytes = cfg.Maps.RingBufferBytes
	loadOpts.EventsRingBufferBytes = cfg.Events.RingBufferBytes
	if opts.attachMode != "auto" {
		loadOpts.Attach = opts.attachMode
	}
	loadOpts.KernelBTF = opts.kernelBTF
	// Filters are in place before the first syscall is counted.
	loadOpts.Prepare = func(p *loader.Probes) error { return filter.Apply(&p.Maps, current.filter, procRoot) }
	probes, err := loader.Load(loadOpts, log)
	if err != nil {
		return err
	}
	defer probes.Close()
	log.Info("attached", zap.String("mode", probes.AttachMode), zap.Bool("latency", cfg.Latency),
		zap.Bool("renames_tracked", probes.RenamesTracked), zap.Strings("labels", current.labels.Names()))

	engine, err := tally.NewEngine(&probes.Maps, procRoot, tally.EngineOptions{
		Labels: current.labels, Limits: current.limits, Cgroups: resolver,
	}, log)
	if err != nil {
		return err
	}
	engine.FoldEvery = cfg.FoldInterval

	// Notable events: read always (a SIGHUP may turn them on), served when on.
	recent := notable.NewRecent(cfg.Events.Buffer)
	decoder := notable.NewDecoder(syscalls.Host(), procRoot, cfg.Events.PathMax)
	notable, err := notable.NewReader(probes.NotableEvents(), decoder)
	if err != nil {
		return err
	}
	defer notable.Close()
	go notable.Run(recent.Add)

	// Everything that needs a capability is done: drop them, in every thread.
	keep, _ := privilege.ParseKeep(opts.keepCaps) // validated with the flags
	if err := privilege.Drop(keep); err != nil {
		return err
	}
	log.Info("capabilities dropped", zap.Strings("kept", privilege.Names(keep)))
	// Loading parsed the kernel's BTF: some 20 MiB of heap, garbage now.
	// Hand it back to the system at once rather than when the scavenger
	// gets round to it, so the daemon's RSS is what it keeps.
	debug.FreeOSMemory()
	if os.Getenv("GOGC") == "" {
		// Most of the heap is long-lived state (one entry per process and
		// syscall) and little is allocated per scrape: collecting at +50%
		// instead of +100% costs little CPU and keeps RSS near what is used.
		debug.SetGCPercent(50)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	engineDone := make(chan error, 1)
	go func() { engineDone <- engine.Run(ctx) }()
	if resolver != nil {
		go pruneCgroups(ctx, resolver, log)
	}

	registry := prometheus.NewRegistry()
	collector := metrics.NewCollector(engine, syscalls.Host(), probes.Capacity(), log)
	collector.SetNativeHistograms(cfg.NativeHistograms)
	registry.MustRegister(
		collector,
		metrics.NewProgramCollector(probes.ProgramStats),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sysobsd_events_total",
			Help: "Notable events (failed and slow calls) received from the kernel."},
			func() float64 { return float64(recent.Total()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sysobsd_events_decode_errors_total",
			Help: "Notable events that could not be decoded."},
			func() float64 { return float64(notable.DecodeErrors.Load()) }),
		versioncollector.NewCollector("sysobsd"),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	// The events endpoint is always there, behind the same TLS and auth,
	// and answers 404 while events are off: a SIGHUP turns it on or off.
	live := &reloadable{recent: recent, decoder: decoder, collector: collector}
	live.eventsServed.Store(cfg.Events.Enabled)
	extra := map[string]http.Handler{"/api/v1/events": live.eventsHandler()}
	server, err := server.NewServer(registry, opts.web, version.Version, slogFrom(log), extra)
	if err != nil {
		return err
	}
	serverDone := make(chan error, 1)
	go func() { serverDone <- server.Serve() }()
	notify(daemon.SdNotifyReady, log)

	var serveErr error
wait:
	for {
		select {
		case sig := <-signals:
			if sig == syscall.SIGHUP {
				notify(daemon.SdNotifyReloading, log)
				cfg, current = reload(ctx, opts.configFile, cfg, current, probes, engine, resolver, live, log)
				notify(daemon.SdNotifyReady, log)
				continue
			}
			log.Info("stopping", zap.Stringer("signal", sig))
			notify(daemon.SdNotifyStopping, log)
			break wait
		case err := <-serverDone:
			serveErr = fmt.Errorf("serve HTTP: %w", err)
			break wait
		case err := <-engineDone:
			serveErr = err
			if serveErr == nil {
				serveErr = errors.New("engine stopped unexpectedly")
			}
			engineDone <- nil
			break wait
		}
	}
	shutdownCtx, stop := context.WithTimeout(context.Background(), 5*time.Second)
	defer stop()
	if err := server.Shutdown(shutdownCtx); err != nil {
		log.Warn("HTTP shutdown", zap.Error(err))
	}
	cancel()
	<-engineDone
	if err := probes.Close(); err != nil {
		log.Warn("detach", zap.Error(err))
	}
	log.Info("detached")
	return serveErr
}

// reloadable is what a reload changes outside the kernel and the engine.
type reloadable struct {
	recent       *notable.Recent
	decoder      *notable.Decoder
	collector    *metrics.Collector
	eventsServed atomic.Bool
}

// eventsHandler serves the recent events while events are on; 404 while off.
func (l *reloadable) eventsHandler() http.Handler {
	serve := notable.Handler(l.recent)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !l.eventsServed.Load() {
			http.Error(w, "notable events are off (events.enabled: false)", http.StatusNotFound)
			return
		}
		serve.ServeHTTP(w, r)
	})
}

// apply takes a reloaded configuration's events and exposition settings.
// Turned off, the events kept are dropped: their paths may be sensitive, and
// turning events on again must not serve them.
func (l *reloadable) apply(next config.Config) {
	if !next.Events.Enabled && l.eventsServed.Load() {
		l.recent.Clear()
	}
	l.eventsServed.Store(next.Events.Enabled)
	l.decoder.SetPathMax(next.Events.PathMax)
	l.collector.SetNativeHistograms(next.NativeHistograms)
}

// restartOnly names the keys whose change a reload cannot apply.
func restartOnly(running, next config.Config) []string {
	var keys []string
	if next.Latency != running.Latency {
		keys = append(keys, "latency")
	}
	if next.FoldInterval != running.FoldInterval {
		keys = append(keys, "fold_interval")
	}
	if !reflect.DeepEqual(next.Maps, running.Maps) {
		keys = append(keys, "maps")
	}
	if next.Events.Buffer != running.Events.Buffer {
		keys = append(keys, "events.buffer")
	}
	if next.Events.RingBufferBytes != running.Events.RingBufferBytes {
		keys = append(keys, "events.ring_buffer_bytes")
	}
	return keys
}

// reload re-reads the configuration on SIGHUP: labels, limits, filters,
// events and native histograms take effect without losing a count;
// restartOnly's keys need a restart. A bad file keeps the running
// configuration.
func reload(ctx context.Context, path string, running config.Config, current settings,
	probes *loader.Probes, engine *tally.Engine, resolver *cgroups.Resolver, live *reloadable, log *zap.Logger) (config.Config, settings) {
	next, err := config.Load(path)
	if err == nil {
		var s settings
		if s, err = settingsFrom(next, resolver); err == nil {
			if err = filter.Apply(&probes.Maps, s.filter, procRoot); err == nil {
				err = engine.Reconfigure(ctx, s.labels, s.limits)
			}
			if err == nil {
				live.apply(next)
				if keys := restartOnly(running, next); len(keys) > 0 {
					log.Warn("reload: these keys take effect at the next start", zap.Strings("keys", keys))
				}
				log.Info("reloaded", zap.String("config", describeConfig(path)), zap.Strings("labels", s.labels.Names()),
					zap.Bool("events", next.Events.Enabled))
				return next, s
			}
		}
	}
	log.Error("reload failed; keeping the running configuration", zap.Error(err))
	return running, current
}

// notify tells systemd (Type=notify) what the daemon is doing; a no-op
// outside systemd.
func notify(state string, log *zap.Logger) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		log.Warn("sd_notify", zap.String("state", state), zap.Error(err))
	}
}

// pruneCgroups forgets removed cgroups' paths every cgroups.PruneInterval
// until ctx ends.
func pruneCgroups(ctx context.Context, resolver *cgroups.Resolver, log *zap.Logger) {
	ticker := time.NewTicker(cgroups.PruneInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			if n := resolver.Prune(); n > 0 {
				log.Debug("forgot removed cgroups", zap.Int("cgroups", n))
			}
		}
	}
}
