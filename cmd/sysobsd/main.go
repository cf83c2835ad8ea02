// Command sysobsd counts every syscall on the host in the kernel and serves
// the totals per process as Prometheus metrics.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"
	"go.uber.org/zap"

	"github.com/sysobsd/sysobsd/internal/config"
	"github.com/sysobsd/sysobsd/internal/loader"
	"github.com/sysobsd/sysobsd/internal/metrics"
	"github.com/sysobsd/sysobsd/internal/syscalls"
	"github.com/sysobsd/sysobsd/internal/tally"
)

// defaultListenAddress is clear of the exhausted 9100–9999 exporter range
// and of Zabbix's 10050/10051.
const defaultListenAddress = ":10190"

type options struct {
	configFile  string
	configCheck bool
	logLevel    string
	logFormat   string
	attachMode  string
	web         *web.FlagConfig
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without os.Exit, so tests can call it.
func run(args []string, stdout, stderr io.Writer) int {
	opts, code, done := parseFlags(args, stdout, stderr)
	if done {
		return code
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "sysobsd: %v\n", err)
		return 1
	}

	cfg, err := config.Load(opts.configFile)
	if err != nil {
		return fail(err)
	}
	if opts.configCheck {
		fmt.Fprintf(stdout, "sysobsd: config %s is valid\n", describeConfig(opts.configFile))
		return 0
	}
	log, err := newLogger(opts.logLevel, opts.logFormat, stderr)
	if err != nil {
		return fail(err)
	}
	defer log.Sync() //nolint:errcheck // stderr cannot be synced on some terminals

	if err := checkWeb(opts.web); err != nil {
		return fail(err)
	}
	if err := serve(opts, cfg, log); err != nil {
		return fail(err)
	}
	return 0
}

func parseFlags(args []string, stdout, stderr io.Writer) (opts options, code int, done bool) {
	app := kingpin.New("sysobsd", "Counts every syscall on this host in the kernel and serves the totals as Prometheus metrics.")
	app.UsageWriter(stdout)
	app.ErrorWriter(stderr)
	app.HelpFlag.Short('h')
	app.Version(version.Print("sysobsd"))
	app.Flag("config.file", "YAML configuration file; without it the embedded defaults are used.").StringVar(&opts.configFile)
	app.Flag("config.check", "Validate the configuration and exit.").BoolVar(&opts.configCheck)
	app.Flag("log.level", "Log level: debug, info, warn, error.").Default("info").StringVar(&opts.logLevel)
	app.Flag("log.format", "Log format: logfmt or json.").Default("logfmt").StringVar(&opts.logFormat)
	app.Flag("bpf.attach-mode", "How to hook the syscall tracepoints: auto (tp_btf, else raw_tracepoint), tp_btf or raw_tracepoint.").Default("auto").StringVar(&opts.attachMode)
	opts.web = kingpinflag.AddFlags(app, defaultListenAddress)

	exited := -1
	app.Terminate(func(status int) { exited = status })
	_, err := app.Parse(args)
	if exited >= 0 { // --help or --version
		return opts, exited, true
	}
	if err == nil {
		err = oneOf("log.level", opts.logLevel, "debug", "info", "warn", "error")
	}
	if err == nil {
		err = oneOf("log.format", opts.logFormat, "logfmt", "json")
	}
	if err == nil {
		err = oneOf("bpf.attach-mode", opts.attachMode, "auto", "tp_btf", "raw_tracepoint")
	}
	if err != nil {
		fmt.Fprintf(stderr, "sysobsd: %v; see sysobsd --help\n", err)
		return opts, 2, true
	}
	return opts, 0, false
}

// oneOf names the flag in the error, which kingpin's enums do not.
func oneOf(flag, value string, allowed ...string) error {
	if slices.Contains(allowed, value) {
		return nil
	}
	return fmt.Errorf("--%s=%s: must be one of %s", flag, value, strings.Join(allowed, ", "))
}

func describeConfig(path string) string {
	if path == "" {
		return "(embedded default)"
	}
	return path
}

// checkWeb fails early, before anything is attached, on a bad web config or
// a listen address that is taken.
func checkWeb(flags *web.FlagConfig) error {
	if *flags.WebConfigFile != "" {
		if err := web.Validate(*flags.WebConfigFile); err != nil {
			return fmt.Errorf("web config %s: %w; see the exporter-toolkit web configuration format", *flags.WebConfigFile, err)
		}
	}
	if *flags.WebSystemdSocket {
		return nil
	}
	for _, addr := range *flags.WebListenAddresses {
		if strings.HasPrefix(addr, "vsock://") {
			continue
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			if errors.Is(err, syscall.EADDRINUSE) {
				return fmt.Errorf("listen on %s: address already in use; stop the other process or choose another --web.listen-address", addr)
			}
			return fmt.Errorf("listen on %s: %w; choose another --web.listen-address", addr, err)
		}
		l.Close()
	}
	return nil
}

func serve(opts options, cfg config.Config, log *zap.Logger) error {
	loadOpts := loader.DefaultOptions()
	loadOpts.Latency = cfg.Latency
	loadOpts.StatsEntries = cfg.Maps.StatsEntries
	loadOpts.ErrorsEntries = cfg.Maps.ErrorsEntries
	loadOpts.RingBufferBytes = cfg.Maps.RingBufferBytes
	if opts.attachMode != "auto" {
		loadOpts.Attach = opts.attachMode
	}
	probes, err := loader.Load(loadOpts, log)
	if err != nil {
		return err
	}
	defer probes.Close()
	log.Info("attached", zap.String("mode", probes.AttachMode), zap.Bool("latency", cfg.Latency), zap.Bool("renames_tracked", probes.RenamesTracked))

	engine, err := tally.NewEngine(&probes.Maps, "/proc", log)
	if err != nil {
		return err
	}
	engine.FoldEvery = cfg.FoldInterval
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	engineDone := make(chan error, 1)
	go func() { engineDone <- engine.Run(ctx) }()

	registry := prometheus.NewRegistry()
	statsCap, errorsCap := probes.Capacity()
	registry.MustRegister(
		metrics.NewCollector(engine, syscalls.Host(), statsCap, errorsCap, log),
		versioncollector.NewCollector("sysobsd"),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	server, err := metrics.NewServer(registry, opts.web, version.Version, slogFrom(log))
	if err != nil {
		return err
	}
	serverDone := make(chan error, 1)
	go func() { serverDone <- server.Serve() }()

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(signals)

	var serveErr error
wait:
	for {
		select {
		case sig := <-signals:
			if sig == syscall.SIGHUP {
				reload(opts.configFile, cfg, log)
				continue
			}
			log.Info("stopping", zap.Stringer("signal", sig))
			break wait
		case err := <-serverDone:
			serveErr = fmt.Errorf("serve HTTP: %w", err)
			break wait
		case err := <-engineDone:
			if err != nil {
				serveErr = err
			} else {
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

// reload re-reads the configuration on SIGHUP. What it may change takes
// effect; map sizes and latency are fixed at start.
func reload(path string, current config.Config, log *zap.Logger) {
	next, err := config.Load(path)
	if err != nil {
		log.Error("reload: keeping the running configuration", zap.Error(err))
		return
	}
	if next != current {
		log.Warn("reload: latency, fold_interval and maps take effect at the next start", zap.String("config", describeConfig(path)))
		return
	}
	log.Info("reload: configuration unchanged", zap.String("config", describeConfig(path)))
}
