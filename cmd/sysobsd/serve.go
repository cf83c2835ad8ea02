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

	sdnotify "github.com/coreos/go-systemd/v22/daemon"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/common/version"
	"go.uber.org/zap"

	"github.com/sysobsd/sysobsd/internal/cgroups"
	"github.com/sysobsd/sysobsd/internal/config"
	"github.com/sysobsd/sysobsd/internal/counting"
	"github.com/sysobsd/sysobsd/internal/filter"
	"github.com/sysobsd/sysobsd/internal/inflight"
	"github.com/sysobsd/sysobsd/internal/metrics"
	"github.com/sysobsd/sysobsd/internal/notable"
	"github.com/sysobsd/sysobsd/internal/privilege"
	"github.com/sysobsd/sysobsd/internal/server"
	"github.com/sysobsd/sysobsd/internal/syscalls"
	"github.com/sysobsd/sysobsd/internal/tally"
)

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
	needsCgroups := s.labels.NeedsCgroups() ||
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

// daemon is a running sysobsd serve: the counting, the notable events and
// what a SIGHUP changes.
type daemon struct {
	opts     options
	cfg      config.Config
	current  settings
	resolver *cgroups.Resolver
	counting *counting.Counting
	events   *notable.Reader
	live     *reloadable
	log      *zap.Logger
	cancel   context.CancelFunc
}

func serve(opts options, cfg config.Config, log *zap.Logger) error {
	// From the start: a SIGHUP's default action would kill a daemon still
	// starting up; one that arrives early is handled once serving.
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(signals)
	d, err := attachDaemon(opts, cfg, log)
	if err != nil {
		return err
	}
	defer d.close()
	srv, err := server.NewServer(d.registry(), opts.web, version.Version, slogFrom(log),
		map[string]http.Handler{
			"/api/v1/events": d.live.eventsHandler(),
			// No arguments nor paths: sysobsd ps reads those on the host.
			"/api/v1/in_flight": inflight.Handler(d.counting.Probes.ReadInFlight, syscalls.Host(), inflight.MonotonicNS),
		})
	if err != nil {
		return err
	}
	serverDone := make(chan error, 1)
	go func() { serverDone <- srv.Serve() }()
	notify(sdnotify.SdNotifyReady, log)
	serveErr := d.loop(signals, serverDone)
	shutdownCtx, stop := context.WithTimeout(context.Background(), 5*time.Second)
	defer stop()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		log.Warn("HTTP shutdown", zap.Error(err))
	}
	return serveErr
}

// attachDaemon attaches the programs with the config's filters, starts the
// engine and the notable events' reader, and drops the capabilities.
func attachDaemon(opts options, cfg config.Config, log *zap.Logger) (*daemon, error) {
	d := &daemon{opts: opts, cfg: cfg, log: log}
	if mount, err := cgroups.FindMount(counting.ProcRoot + "/self/mountinfo"); err == nil {
		d.resolver = cgroups.NewResolver(mount)
	} else {
		log.Warn("no cgroup2: unit, container and cgroup labels are unavailable", zap.Error(err))
	}
	var err error
	if d.current, err = settingsFrom(cfg, d.resolver); err != nil {
		return nil, err
	}
	for _, path := range d.current.filter.Unresolved {
		log.Warn("filtered cgroup does not exist (yet); it is looked up again at SIGHUP", zap.String("cgroup", path))
	}
	d.counting, err = counting.Start(counting.Options{
		Config: cfg, Filter: d.current.filter, Attach: opts.attachMode, KernelBTF: opts.kernelBTF,
		Engine: true, Labels: d.current.labels, Limits: d.current.limits, Cgroups: d.resolver,
	}, log)
	if err != nil {
		return nil, err
	}
	probes := d.counting.Probes
	fields := []zap.Field{zap.String("mode", probes.AttachMode), zap.Stringer("latency", cfg.Latency),
		zap.Bool("renames_tracked", probes.RenamesTracked), zap.Strings("labels", d.current.labels.Names())}
	if probes.LongCall != 0 {
		fields = append(fields, zap.Uint32("timed_one_in", cfg.LatencySampleEvery), zap.Duration("every_call_from", probes.LongCall))
	}
	log.Info("attached", fields...)

	// Notable events: read always (a SIGHUP may turn them on), served when on.
	recent := notable.NewRecent(cfg.Events.Buffer)
	decoder := notable.NewDecoder(syscalls.Host(), counting.ProcRoot, cfg.Events.PathMax)
	if d.events, err = notable.NewReader(probes.NotableEvents(), decoder); err != nil {
		d.counting.Close()
		return nil, err
	}
	go d.events.Run(recent.Add)
	collector := metrics.NewCollector(d.counting.Engine, syscalls.Host(), probes.Capacity(), log)
	collector.SetNativeHistograms(cfg.NativeHistograms)
	d.live = &reloadable{recent: recent, decoder: decoder, collector: collector}
	d.live.eventsServed.Store(cfg.Events.Enabled)

	// Everything that needs a capability is done: drop them, in every thread.
	keep, _ := privilege.ParseKeep(opts.keepCaps) // validated with the flags
	if err := privilege.Drop(keep); err != nil {
		d.close()
		return nil, err
	}
	log.Info("capabilities dropped", zap.Strings("kept", privilege.Names(keep)))
	settleMemory()
	var ctx context.Context
	ctx, d.cancel = context.WithCancel(context.Background())
	if d.resolver != nil {
		go pruneCgroups(ctx, d.resolver, log)
	}
	return d, nil
}

// settleMemory hands back what loading used. Loading parsed the kernel's
// BTF: some 20 MiB of heap, garbage now; returned at once rather than when
// the scavenger gets round to it, the daemon's RSS is what it keeps.
func settleMemory() {
	debug.FreeOSMemory()
	if os.Getenv("GOGC") == "" {
		// Most of the heap is long-lived state (one entry per process and
		// syscall) and little is allocated per scrape: collecting at +50%
		// instead of +100% costs little CPU and keeps RSS near what is used.
		debug.SetGCPercent(50)
	}
}

// latencyMode says how the time metrics are measured, for dashboards to mark
// estimates; latency is a restart-only key, so the values are constant.
// longCall is the loader's (0 unless sampled).
func latencyMode(mode config.LatencyMode, every uint32, longCall time.Duration) prometheus.Collector {
	timed := map[config.LatencyMode]float64{config.LatencyOff: 0, config.LatencyEvery: 1, config.LatencySampled: 1 / float64(every)}[mode]
	return constGauges{
		prometheus.MustNewConstMetric(prometheus.NewDesc("sysobsd_latency_timed_ratio",
			"The share of system calls whose time is measured: 1 with latency: true, 1/latency_sample_every with latency: sampled (sysobsd_syscall_seconds_total and sysobsd_syscall_duration_seconds are then estimates, each timed call scaled by latency_sample_every), 0 with latency: false.", nil, nil),
			prometheus.GaugeValue, timed),
		prometheus.MustNewConstMetric(prometheus.NewDesc("sysobsd_latency_long_call_seconds",
			"With latency: sampled, every call at least this long (2^24 ns and 4 kernel ticks or more) is counted once, unscaled, timed or by its kernel ticks; 0 otherwise.", nil, nil),
			prometheus.GaugeValue, longCall.Seconds()),
	}
}

// constGauges serves metrics whose values never change.
type constGauges []prometheus.Metric

func (g constGauges) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range g {
		ch <- m.Desc()
	}
}

func (g constGauges) Collect(ch chan<- prometheus.Metric) {
	for _, m := range g {
		ch <- m
	}
}

// registry holds every metric the daemon serves.
func (d *daemon) registry() *prometheus.Registry {
	registry := prometheus.NewRegistry()
	registry.MustRegister(
		d.live.collector,
		metrics.NewProgramCollector(d.counting.Probes.ProgramStats),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sysobsd_events_total",
			Help: "Notable events (failed and slow calls) received from the kernel."},
			func() float64 { return float64(d.live.recent.Total()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sysobsd_events_decode_errors_total",
			Help: "Notable events that could not be decoded."},
			func() float64 { return float64(d.events.DecodeErrors.Load()) }),
		versioncollector.NewCollector("sysobsd"),
		latencyMode(d.cfg.Latency, d.cfg.LatencySampleEvery, d.counting.Probes.LongCall),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return registry
}

// loop serves signals until one stops the daemon, the HTTP server fails or
// the engine stops; a SIGHUP reloads the config.
func (d *daemon) loop(signals <-chan os.Signal, serverDone <-chan error) error {
	for {
		select {
		case sig := <-signals:
			if sig == syscall.SIGHUP {
				notify(sdnotify.SdNotifyReloading, d.log)
				if err := d.reload(); err != nil {
					d.log.Error("reload failed; keeping the running configuration", zap.Error(err))
				}
				notify(sdnotify.SdNotifyReady, d.log)
				continue
			}
			d.log.Info("stopping", zap.Stringer("signal", sig))
			notify(sdnotify.SdNotifyStopping, d.log)
			return nil
		case err := <-serverDone:
			return fmt.Errorf("serve HTTP: %w", err)
		case <-d.counting.Stopped():
			if err := d.counting.Err(); err != nil {
				return err
			}
			return errors.New("engine stopped unexpectedly")
		}
	}
}

// close stops the engine and the events' reader and detaches the programs.
func (d *daemon) close() {
	if d.cancel != nil {
		d.cancel()
	}
	if d.events != nil {
		d.events.Close()
	}
	if err := d.counting.Close(); err != nil {
		d.log.Warn("detach", zap.Error(err))
	}
	d.log.Info("detached")
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
	if next.Latency == config.LatencySampled && next.LatencySampleEvery != running.LatencySampleEvery {
		keys = append(keys, "latency_sample_every")
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
// restartOnly's keys need a restart. On error (a bad file, a filter the
// kernel refused) the running configuration stays.
func (d *daemon) reload() error {
	next, err := config.Load(d.opts.configFile)
	if err != nil {
		return err
	}
	s, err := settingsFrom(next, d.resolver)
	if err != nil {
		return err
	}
	if err := filter.Apply(&d.counting.Probes.Maps, s.filter, counting.ProcRoot); err != nil {
		return err
	}
	if err := d.counting.Engine.Reconfigure(context.Background(), s.labels, s.limits); err != nil {
		return err
	}
	d.live.apply(next)
	if keys := restartOnly(d.cfg, next); len(keys) > 0 {
		d.log.Warn("reload: these keys take effect at the next start", zap.Strings("keys", keys))
	}
	d.log.Info("reloaded", zap.String("config", describeConfig(d.opts.configFile)), zap.Strings("labels", s.labels.Names()),
		zap.Bool("events", next.Events.Enabled))
	d.cfg, d.current = next, s
	return nil
}

// notify tells systemd (Type=notify) what the daemon is doing; a no-op
// outside systemd.
func notify(state string, log *zap.Logger) {
	if _, err := sdnotify.SdNotify(false, state); err != nil {
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
