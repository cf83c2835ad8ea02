package main

import (
	"io"

	"github.com/alecthomas/kingpin/v2"
	"go.uber.org/zap"

	"github.com/sysobsd/sysobsd/internal/config"
)

type topOptions struct {
	daemon   string
	sort     string
	interval string
	count    int
}

func addTopCommand(app *kingpin.Application, o *topOptions) {
	cmd := app.Command("top", "A live table of the busiest processes by syscall time, calls and errors.")
	cmd.Flag("daemon", "Read a running daemon's /metrics at this address (host:port) instead of loading programs.").StringVar(&o.daemon)
	cmd.Flag("sort", "Sort by time, calls or errors (keys t, c, e while running).").Default("time").StringVar(&o.sort)
	cmd.Flag("count", "Refreshes before exiting (0: until q or Ctrl-C).").IntVar(&o.count)
}

func runTop(opts options, cfg config.Config, stdout io.Writer, log *zap.Logger) error {
	return runTopTable(opts, cfg, stdout, log)
}
