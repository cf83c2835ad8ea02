// Command sysobsd counts every syscall on the host in the kernel and serves
// the totals per process as Prometheus metrics.
package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/alecthomas/kingpin/v2"
	"github.com/cilium/ebpf"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"
	"go.uber.org/zap"

	"github.com/sysobsd/sysobsd/internal/config"
	"github.com/sysobsd/sysobsd/internal/loader"
	"github.com/sysobsd/sysobsd/internal/privilege"
)

// defaultListenAddress is clear of the exhausted 9100–9999 exporter range
// and of Zabbix's 10050/10051.
const defaultListenAddress = ":10190"

type options struct {
	command     string // "serve", "stat", "trace", "top"
	stat        statOptions
	trace       traceOptions
	top         topOptions
	ps          psOptions
	inject      injectOptions
	configFile  string
	configCheck bool
	logLevel    string
	logFormat   string
	attachMode  string
	kernelBTF   string
	keepCaps    string
	web         *web.FlagConfig
}

func main() {
	// sysobsd stat's child: waits until the programs watch it, then execs.
	if os.Getenv(gateEnv) != "" {
		os.Exit(gate())
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without os.Exit, so tests can call it.
func run(args []string, stdout, stderr io.Writer) int {
	opts, code, done := parseFlags(args, stdout, stderr)
	if done {
		return code
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "sysobsd: %s\n", oneLine(err))
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

	for _, sc := range subcommands {
		if sc.name == opts.command {
			code, err := sc.run(opts, cfg, stdout, stderr, log)
			if err != nil {
				return fail(err)
			}
			return code
		}
	}
	return fail(fmt.Errorf("unknown command %q", opts.command))
}

// subcommand is one of sysobsd's commands: its flags and what it does. The
// first is the default.
type subcommand struct {
	name string
	add  func(*kingpin.Application, *options)
	run  func(opts options, cfg config.Config, stdout, stderr io.Writer, log *zap.Logger) (int, error)
}

var subcommands = []subcommand{
	{"serve", func(app *kingpin.Application, _ *options) {
		app.Command("serve", "Run the daemon: count every syscall and serve /metrics (the default).").Default()
	}, runServe},
	{"stat", func(app *kingpin.Application, o *options) { addStatCommand(app, &o.stat) }, runStat},
	{"trace", func(app *kingpin.Application, o *options) { addTraceCommand(app, &o.trace) }, exitZero(runTrace)},
	{"top", func(app *kingpin.Application, o *options) { addTopCommand(app, &o.top) }, exitZero(runTop)},
	{"ps", func(app *kingpin.Application, o *options) { addPsCommand(app, &o.ps) }, exitZero(runPs)},
	{"inject", func(app *kingpin.Application, o *options) { addInjectCommand(app, &o.inject) }, runInject},
}

// exitZero adapts a command that only fails or succeeds.
func exitZero(run func(options, config.Config, io.Writer, *zap.Logger) error) func(options, config.Config, io.Writer, io.Writer, *zap.Logger) (int, error) {
	return func(opts options, cfg config.Config, stdout, _ io.Writer, log *zap.Logger) (int, error) {
		if err := run(opts, cfg, stdout, log); err != nil {
			return 1, err
		}
		return 0, nil
	}
}

func runServe(opts options, cfg config.Config, _, _ io.Writer, log *zap.Logger) (int, error) {
	if err := checkWeb(opts.web); err != nil {
		return 1, err
	}
	if err := serve(opts, cfg, log); err != nil {
		return 1, err
	}
	return 0, nil
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
	app.Flag("bpf.kernel-btf", "Where to read the running kernel's BTF for CO-RE (the kernel must still have its own: tp_btf hooks need it).").Default(loader.KernelBTFPath).StringVar(&opts.kernelBTF)
	app.Flag("capabilities.keep", "Capabilities kept after the programs are attached: auto (none from Linux 5.19, CAP_BPF before), none, or names like bpf,perfmon.").Default(privilege.KeepAuto).StringVar(&opts.keepCaps)
	opts.web = kingpinflag.AddFlags(app, defaultListenAddress)
	for _, sc := range subcommands {
		sc.add(app, &opts)
	}

	exited := -1
	app.Terminate(func(status int) { exited = status })
	// kingpin lets a trailing value-taking flag pass without its value when
	// a default command exists; refuse it here.
	if err := trailingFlagWithoutValue(app, args); err != nil {
		fmt.Fprintf(stderr, "sysobsd: %v; see sysobsd --help\n", err)
		return opts, 2, true
	}
	command, err := app.Parse(args)
	if exited >= 0 { // --help or --version
		return opts, exited, true
	}
	opts.command = command
	if err == nil {
		err = oneOf("log.level", opts.logLevel, "debug", "info", "warn", "error")
	}
	if err == nil {
		err = oneOf("log.format", opts.logFormat, "logfmt", "json")
	}
	if err == nil {
		err = oneOf("bpf.attach-mode", opts.attachMode, "auto", "tp_btf", "raw_tracepoint")
	}
	if err == nil {
		_, err = privilege.ParseKeep(opts.keepCaps)
	}
	if err != nil {
		fmt.Fprintf(stderr, "sysobsd: %v; see sysobsd --help\n", err)
		return opts, 2, true
	}
	return opts, 0, false
}

func trailingFlagWithoutValue(app *kingpin.Application, args []string) error {
	if len(args) == 0 {
		return nil
	}
	last := args[len(args)-1]
	name, ok := strings.CutPrefix(last, "--")
	if !ok || strings.Contains(name, "=") {
		return nil
	}
	for _, f := range app.Model().FlagGroupModel.Flags {
		if f.Name == name && !f.IsBoolFlag() {
			return fmt.Errorf("expected argument for flag '--%s'", name)
		}
	}
	return nil
}

// oneLine folds a library's multi-line error into the one line users get;
// a verifier log keeps its lines: it is for a bug report, not for reading.
func oneLine(err error) string {
	msg := err.Error()
	if errors.As(err, new(*ebpf.VerifierError)) {
		return msg
	}
	lines := strings.Split(msg, "\n")
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	return strings.Join(slices.DeleteFunc(lines, func(l string) bool { return l == "" }), "; ")
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
		// What go-systemd's activation reads, checked before anything is
		// attached rather than when the server starts.
		if os.Getenv("LISTEN_PID") != strconv.Itoa(os.Getpid()) || os.Getenv("LISTEN_FDS") == "" {
			return errors.New("--web.systemd-socket: systemd passed no socket (LISTEN_PID, LISTEN_FDS unset); start sysobsd from its .socket unit, or give --web.listen-address instead")
		}
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
