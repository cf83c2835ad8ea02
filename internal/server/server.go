// Package server serves sysobsd's HTTP endpoints side by side: /metrics,
// the notable events' API and a landing page, behind the exporter toolkit's
// TLS, basic auth and systemd socket activation.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/exporter-toolkit/web"
)

// Server serves /metrics and a landing page through the exporter toolkit,
// which brings TLS, basic auth (--web.config.file) and systemd sockets.
type Server struct {
	http  *http.Server
	flags *web.FlagConfig
	log   *slog.Logger
}

// NewServer serves registry's metrics, and extra handlers by path (behind
// the same TLS and basic auth); version shows on the landing page.
func NewServer(registry *prometheus.Registry, flags *web.FlagConfig, version string, log *slog.Logger, extra map[string]http.Handler) (*Server, error) {
	mux := http.NewServeMux()
	links := []web.LandingLinks{{Address: "/metrics", Text: "Metrics"}}
	for path, h := range extra {
		mux.Handle(path, h)
		links = append(links, web.LandingLinks{Address: path, Text: path})
	}
	mux.Handle("/metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
		Registry:            registry, // promhttp_metric_handler_errors_total
	}))
	landing, err := web.NewLandingPage(web.LandingConfig{
		Name:        "sysobsd",
		Description: "Every syscall on this host, counted in the kernel",
		Version:     version,
		Links:       links,
	})
	if err != nil {
		return nil, fmt.Errorf("landing page: %w", err)
	}
	mux.Handle("/", landing)
	return &Server{
		// ErrorLog: net/http's own errors (a TLS handshake from a plain-HTTP
		// client) go to the daemon's log in its format, not to stderr's.
		http:  &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)},
		flags: flags,
		log:   log,
	}, nil
}

// Serve blocks until Shutdown; it returns nil after a clean shutdown.
func (s *Server) Serve() error {
	err := web.ListenAndServe(s.http, s.flags, s.log)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting scrapes and waits for those in flight.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.http.Shutdown(ctx)
}
