// Package e2e runs sysobsd as a user would, scraped by a real Prometheus
// (Debian's prometheus package) loaded with the shipped recording rules and
// alerts, and checks that an alert fires on a real workload and that every
// recording rule and dashboard query answers. Its test needs root.
package e2e
