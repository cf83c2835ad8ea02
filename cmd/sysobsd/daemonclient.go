package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"strings"
)

// daemonEndpoint is a running daemon's address (host:port or URL) with path
// appended, and the same with any basic-auth password hidden, for messages.
type daemonEndpoint struct {
	url, shown string
}

func newDaemonEndpoint(addr, path string) daemonEndpoint {
	url := addr
	if !strings.Contains(url, "://") {
		url = "http://" + url
	}
	url = strings.TrimSuffix(url, "/") + path
	return daemonEndpoint{url: url, shown: redactURL(url)}
}

// get fetches the endpoint; command prefixes the errors ("top", "ps"), hint
// follows "is sysobsd serving there?". The caller closes the body.
func (e daemonEndpoint) get(client *http.Client, command, hint string) (io.ReadCloser, error) {
	resp, err := client.Get(e.url)
	if err != nil {
		var uerr *neturl.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // its URL shows the user name; shown follows
		}
		return nil, fmt.Errorf("%s: get %s: %w; is sysobsd serving there?%s", command, e.shown, err, hint)
	}
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		if m := strings.TrimSpace(string(msg)); m != "" {
			return nil, fmt.Errorf("%s: %s: %s: %s", command, e.shown, resp.Status, m)
		}
		return nil, fmt.Errorf("%s: %s: %s", command, e.shown, resp.Status)
	}
	return resp.Body, nil
}

// redactURL is raw with its password replaced, for messages.
func redactURL(raw string) string {
	u, err := neturl.Parse(raw)
	if err != nil {
		return "the --daemon address"
	}
	return u.Redacted()
}
