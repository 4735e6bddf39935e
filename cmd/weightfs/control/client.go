package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Client talks to a daemon's control plane.
type Client struct {
	addr string
	base string
	http *http.Client
}

// NewClient returns a client of the daemon at addr ("host:port" or
// "unix:/path"), as given to `weightfs mount --control-addr`.
func NewClient(addr string) *Client {
	tr := &http.Transport{DisableKeepAlives: true}
	base := "http://" + addr
	if path, ok := strings.CutPrefix(addr, unixPrefix); ok {
		base = "http://weightfs"
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}
	}
	return &Client{addr: addr, base: base, http: &http.Client{Transport: tr}}
}

// Addr is the address the client was made for.
func (c *Client) Addr() string { return c.addr }

// Raw returns the body of GET path, which must answer 200.
func (c *Client) Raw(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("no answer from the weightfs daemon at %s: %w", c.addr, unwrapURLError(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, fmt.Errorf("reading %s from the weightfs daemon at %s: %w", path, c.addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s at %s: %s: %s", path, c.addr, resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}

// Status fetches and decodes /status.
func (c *Client) Status(ctx context.Context) (*Status, []byte, error) {
	body, err := c.Raw(ctx, "/status")
	if err != nil {
		return nil, nil, err
	}
	var st Status
	if err := json.Unmarshal(body, &st); err != nil {
		return nil, nil, fmt.Errorf("/status at %s is not weightfs status JSON: %w", c.addr, err)
	}
	return &st, body, nil
}

// StatusWithin is Status bounded by d.
func (c *Client) StatusWithin(ctx context.Context, d time.Duration) (*Status, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	st, _, err := c.Status(ctx)
	return st, err
}

// unwrapURLError drops the "Get \"http://...\":" prefix, which repeats the
// address and, for a Unix socket, names a made-up host.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
