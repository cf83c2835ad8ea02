package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"go.uber.org/zap"
	"golang.org/x/term"

	"github.com/sysobsd/sysobsd/internal/config"
)

type topOptions struct {
	daemon string
	sort   string
	count  int
}

func addTopCommand(app *kingpin.Application, o *topOptions) {
	cmd := app.Command("top", "A live table of the busiest processes by syscall time, calls and errors.")
	cmd.Flag("daemon", "Read a running daemon's /metrics at this address (host:port) instead of loading programs.").StringVar(&o.daemon)
	cmd.Flag("sort", "Sort by time, calls or errors (keys t, c, e while running).").Default("time").StringVar(&o.sort)
	cmd.Flag("count", "Refreshes before exiting (0: until q or Ctrl-C).").IntVar(&o.count)
}

// plainRows is how many rows top prints per refresh when stdout is not a
// terminal.
const plainRows = 25

func runTop(opts options, cfg config.Config, stdout io.Writer, log *zap.Logger) error {
	o := opts.top
	if err := oneOf("sort", o.sort, "time", "calls", "errors"); err != nil {
		return err
	}
	sample, closeSource, err := topSource(opts, cfg, log)
	if err != nil {
		return err
	}
	defer closeSource()

	screen, err := openTopScreen(stdout)
	if err != nil {
		return err
	}
	defer screen.close() // before an error is printed, too: the shell gets its terminal back

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(signals)

	prev, err := sample()
	if err != nil {
		return err
	}
	frame := topFrame{sortBy: o.sort, busy: prev.busy}
	draw := func() error {
		if screen != nil {
			return renderScreen(stdout, frame, screen.width, screen.height)
		}
		return renderPlain(stdout, frame, plainRows)
	}
	if screen != nil {
		if err := draw(); err != nil { // the header at once; rows after the first interval
			return fmt.Errorf("top: draw: %w", err)
		}
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for shown := 0; o.count == 0 || shown < o.count; {
		select {
		case <-signals:
			return nil
		case <-screen.resized():
			screen.readSize()
		case k, ok := <-screen.keyPresses():
			if !ok {
				return nil // the terminal is gone
			}
			switch k {
			case 'q', 3: // q, or Ctrl-C in raw mode
				return nil
			case 't':
				frame.sortBy = "time"
			case 'c':
				frame.sortBy = "calls"
			case 'e':
				frame.sortBy = "errors"
			default:
				continue
			}
			sortRows(frame.rows, frame.sortBy)
		case <-tick.C:
			cur, err := sample()
			if err != nil {
				return err
			}
			frame.rows, frame.busy = topRows(prev, cur, frame.sortBy), cur.busy
			frame.stuck = stuckLines(cur)
			prev = cur
			shown++
		}
		if err := draw(); err != nil { // the terminal or pipe is gone
			return fmt.Errorf("top: draw: %w", err)
		}
	}
	return nil
}

// topScreen is the terminal top draws on: its size, raw mode on stdin for
// single keys, the alternate screen. A nil *topScreen is plain output.
type topScreen struct {
	out           *os.File
	width, height int
	keys          chan byte
	winch         chan os.Signal
	restore       func()
}

// openTopScreen takes over the terminal when stdout and stdin are one; nil
// (plain output, no escape codes) otherwise.
func openTopScreen(stdout io.Writer) (*topScreen, error) {
	out, ok := stdout.(*os.File)
	in := os.Stdin
	if !ok || !term.IsTerminal(int(out.Fd())) || !term.IsTerminal(int(in.Fd())) {
		return nil, nil
	}
	old, err := term.MakeRaw(int(in.Fd()))
	if err != nil {
		return nil, nil // keys not readable: plain output is still right
	}
	s := &topScreen{out: out, keys: make(chan byte, 8), winch: make(chan os.Signal, 1)}
	// SIGWINCH before the first size: a resize in between is not missed.
	signal.Notify(s.winch, syscall.SIGWINCH)
	s.readSize()
	// Best effort here and in restore: a terminal that cannot be written
	// shows in the first frame's error.
	_, _ = io.WriteString(out, "\x1b[?1049h\x1b[?25l") // alternate screen, cursor hidden
	s.restore = func() {
		signal.Stop(s.winch)
		_, _ = io.WriteString(out, "\x1b[?25h\x1b[?1049l") // cursor shown, the shell's screen back
		_ = term.Restore(int(in.Fd()), old)
	}
	go func() {
		defer close(s.keys)
		var b [1]byte
		for {
			if n, err := in.Read(b[:]); err != nil || n == 0 {
				return
			}
			s.keys <- b[0]
		}
	}()
	return s, nil
}

// readSize reads the terminal's size again (80×24 if it cannot).
func (s *topScreen) readSize() {
	w, h, err := term.GetSize(int(s.out.Fd()))
	if err != nil || w <= 0 || h <= 0 {
		w, h = 80, 24
	}
	s.width, s.height = w, h
}

// resized and keyPresses are nil channels, never ready, for plain output.
func (s *topScreen) resized() <-chan os.Signal {
	if s == nil {
		return nil
	}
	return s.winch
}

func (s *topScreen) keyPresses() <-chan byte {
	if s == nil {
		return nil
	}
	return s.keys
}

func (s *topScreen) close() {
	if s != nil {
		s.restore()
	}
}
