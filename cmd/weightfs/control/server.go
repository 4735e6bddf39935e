// Package control is the daemon's control plane over HTTP: liveness
// (/healthz), readiness (/readyz), a JSON snapshot of what is cached
// (/status) and Prometheus metrics (/metrics), plus the client that
// `weightfs wait` and `weightfs status` use. It reads the cache's state and
// never changes it, and it must never serve a credential: error text is
// redacted with every secret value the daemon knows before it leaves.
package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// DefaultAddr is where the control plane listens unless told otherwise:
// loopback only (nothing here is for the network at large), on the port
// conventionally used by Prometheus exporters of OpenTelemetry, so a
// Kubernetes probe or a sidecar in the same pod reaches it with no setup.
const DefaultAddr = "127.0.0.1:9464"

// unixPrefix marks a Unix socket address: "unix:/run/weightfs/control.sock".
const unixPrefix = "unix:"

// Options configure a Server. Zero values take the defaults in the comments.
type Options struct {
	Metrics *Metrics     // served at /metrics; default: a fresh NewMetrics()
	Secrets []string     // values redacted from every error text served; default none
	Logger  *slog.Logger // default slog.Default()
	// SampleEvery is how often cached bytes are sampled for the rate and
	// ETA; default 1s. RateWindow is the span the rate is averaged over;
	// default 10s, long enough to smooth chunk-sized steps (8 MiB at once).
	SampleEvery, RateWindow time.Duration
	Now                     func() time.Time // default time.Now (tests inject)
	Version                 string           // reported in /status; default none
}

// Server answers the control endpoints. It is safe for concurrent use.
type Server struct {
	opts    Options
	started time.Time
	ready   atomic.Bool
	rates   *rateTracker

	mu    sync.Mutex
	model *Model      // GUARDED_BY(mu); nil until Ready
	srv   http.Server // GUARDED_BY(mu)
	stop  chan struct{}
}

// New returns a Server that is alive but not ready.
func New(o Options) *Server {
	if o.Metrics == nil {
		o.Metrics = NewMetrics()
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.SampleEvery <= 0 {
		o.SampleEvery = time.Second
	}
	if o.RateWindow <= 0 {
		o.RateWindow = 10 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Server{opts: o, started: o.Now(), rates: newRateTracker(o.RateWindow), stop: make(chan struct{})}
	s.srv.Handler = s.Handler()
	s.srv.ReadHeaderTimeout = 10 * time.Second
	o.Metrics.setProgress(s.progressTotals)
	return s
}

// Ready publishes the mounted volumes and turns /readyz to 200. Call it
// once the listing is served; the rate sampler starts with it.
func (s *Server) Ready(m Model) {
	s.mu.Lock()
	s.model = &m
	s.mu.Unlock()
	s.sample()
	s.ready.Store(true)
	go s.sampleLoop()
}

// NotReady turns /readyz back to 503, e.g. while unmounting.
func (s *Server) NotReady() { s.ready.Store(false) }

// Handler routes the control endpoints.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !s.ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready: the listing is not served yet")
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /status", s.serveStatus)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.opts.Metrics.reg, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(s.opts.Logger.Handler(), slog.LevelWarn)}))
	return mux
}

// Serve answers on l until Close.
func (s *Server) Serve(l net.Listener) error {
	err := s.srv.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Close stops the sampler and the listener, letting requests in flight
// finish for a moment.
func (s *Server) Close() error {
	s.mu.Lock()
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return s.srv.Shutdown(ctx)
}

// sampleLoop samples the rates until every file is settled, then stops:
// the daemon lives for days beside a model server, and once the model is
// in, a ticker would only wake it for nothing. A status request samples
// too, so a file healing later still shows a rate to whoever asks.
func (s *Server) sampleLoop() {
	t := time.NewTicker(s.opts.SampleEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			if s.sample() {
				return
			}
		}
	}
}

// Listen opens addr: "host:port" for TCP or "unix:/path" for a Unix socket.
// A socket file left behind by a dead daemon is replaced; one a live daemon
// answers on is not.
func Listen(addr string) (net.Listener, error) {
	path, ok := strings.CutPrefix(addr, unixPrefix)
	if !ok {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("control address %s: %w", addr, err)
		}
		return l, nil
	}
	if path == "" {
		return nil, fmt.Errorf("control address %q: the socket path is empty (write unix:/path/to.sock)", addr)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("control address %s: %w", addr, err)
	}
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("control address %s: another process answers on this socket", addr)
		} else if errors.Is(err, syscall.ECONNREFUSED) {
			os.Remove(path) // stale: its daemon died
		}
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control address %s: %w", addr, err)
	}
	// Connecting needs write permission on the socket; the kernel creates
	// it as 0777 less the umask, which under umask 0 lets every local user
	// in. Only the daemon's own user may ask (root passes regardless).
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("control address %s: %w", addr, err)
	}
	return l, nil
}

// IsAddrInUse reports whether a Listen error says the address is taken.
func IsAddrInUse(err error) bool { return errors.Is(err, syscall.EADDRINUSE) }
