// Package forward port-forwards a loopback port on this machine to a port
// inside a pod, in-process: in Kubernetes's websocket port-forward
// protocol, one websocket a connection (channel.go), or, where the API
// server refuses that, with client-go's (SPDY tunnelled in a websocket,
// then SPDY). It reports readiness and the loss of the forward; it knows
// nothing of what flows through it.
package forward

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
)

// URL is the portforward subresource URL of a pod.
func URL(client kubernetes.Interface, namespace, pod string) *url.URL {
	return client.CoreV1().RESTClient().Post().Resource("pods").Namespace(namespace).Name(pod).SubResource("portforward").URL()
}

// A Dialer reaches one pod's ports through its portforward subresource:
// with Kubernetes's websocket port-forward protocol (channel.go) when it
// has it, else with client-go's streams (SPDY, tunnelled in a websocket
// or not).
type Dialer struct {
	channel *channelDialer    // nil: streams only
	streams httpstream.Dialer // nil: the channel protocol only
}

// NewDialer tries Kubernetes's websocket port-forward protocol first, then
// client-go's websocket-tunnelled SPDY, then SPDY, each when the upgrade
// before it fails (a refusal, a proxy that cannot pass websockets). Where
// all fail, the error is the last one's.
func NewDialer(cfg *rest.Config, u *url.URL) (*Dialer, error) {
	d, err := ChannelDialer(cfg, u)
	if err != nil {
		return nil, err
	}
	if d.streams, err = FallbackDialer(cfg, u); err != nil {
		return nil, err
	}
	return d, nil
}

// ChannelDialer uses Kubernetes's websocket port-forward protocol only.
func ChannelDialer(cfg *rest.Config, u *url.URL) (*Dialer, error) {
	ch, err := newChannelDialer(cfg, u)
	if err != nil {
		return nil, err
	}
	return &Dialer{channel: ch}, nil
}

// Streams uses client-go's port-forward through d only.
func Streams(d httpstream.Dialer) *Dialer { return &Dialer{streams: d} }

// SPDYDialer dials the portforward subresource with SPDY.
func SPDYDialer(cfg *rest.Config, u *url.URL) (httpstream.Dialer, error) {
	transport, upgrader, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		return nil, err
	}
	return spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, u), nil
}

// WebsocketDialer dials the portforward subresource with SPDY tunnelled in
// a websocket (Kubernetes ≥ 1.30).
func WebsocketDialer(cfg *rest.Config, u *url.URL) (httpstream.Dialer, error) {
	return portforward.NewSPDYOverWebsocketDialer(u, cfg)
}

// FallbackDialer tries WebsocketDialer and falls back to SPDY when the
// upgrade fails, as kubectl does.
func FallbackDialer(cfg *rest.Config, u *url.URL) (httpstream.Dialer, error) {
	ws, err := WebsocketDialer(cfg, u)
	if err != nil {
		return nil, err
	}
	sp, err := SPDYDialer(cfg, u)
	if err != nil {
		return nil, err
	}
	return portforward.NewFallbackDialer(ws, sp, upgradeRefused), nil
}

func upgradeRefused(err error) bool {
	return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
}

// ErrLost is wrapped by the error of a forward that ended without Close:
// the pod went away, the API server or kubelet closed the stream, the
// network broke.
var ErrLost = errors.New("port-forward lost")

// Forward is one running port-forward. Close stops it; Done is closed when
// it ends for any reason, after which Err says why.
//
// A connection the pod side refuses ends the forward with its error, in
// either protocol (client-go's forwarder ends so; the channel protocol's
// forward does the same, so callers see one behaviour).
//
// A Forward owns its goroutines, started by Start: the forwarder, which
// ends when the forward does (and then closes Done), and a watcher that
// closes the forward when Start's context ends. None outlives Close.
type Forward struct {
	LocalPort int

	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
	err    error
	errOut *syncBuffer
}

// Start forwards 127.0.0.1:localPort (0 picks a free port) to podPort and
// returns once the local listener is ready and the API server has taken
// the first upgrade.
func Start(ctx context.Context, d *Dialer, localPort, podPort int) (*Forward, error) {
	if d.channel != nil {
		ws, err := d.channel.dial(ctx, podPort)
		switch {
		case err == nil:
			return startChannel(ctx, d.channel, ws, localPort, podPort)
		case d.streams == nil || ctx.Err() != nil:
			return nil, fmt.Errorf("port-forward to pod port %d: %w", podPort, err)
		}
	}
	return startStreams(ctx, d.streams, localPort, podPort)
}

// startStreams forwards with client-go's forwarder.
func startStreams(ctx context.Context, dialer httpstream.Dialer, localPort, podPort int) (*Forward, error) {
	f := newForward()
	ready := make(chan struct{})
	pf, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{fmt.Sprintf("%d:%d", localPort, podPort)}, f.stop, ready, io.Discard, f.errOut)
	if err != nil {
		return nil, err
	}
	go func() {
		err := pf.ForwardPorts()
		switch {
		case f.closed():
		case err == nil:
			err = ErrLost
		default:
			err = fmt.Errorf("%w: %w", ErrLost, err)
		}
		if msg := f.errOut.String(); err != nil && msg != "" {
			err = fmt.Errorf("%w (%s)", err, strings.TrimSpace(msg))
		}
		f.err = err
		close(f.done)
	}()
	select {
	case <-ready:
	case <-f.done:
		return nil, fmt.Errorf("port-forward to pod port %d: %w", podPort, f.err)
	case <-ctx.Done():
		f.Close()
		return nil, ctx.Err()
	}
	ports, err := pf.GetPorts()
	if err != nil || len(ports) != 1 {
		f.Close()
		return nil, fmt.Errorf("port-forward to pod port %d: no local port (%v)", podPort, err)
	}
	f.LocalPort = int(ports[0].Local)
	f.closeWith(ctx)
	return f, nil
}

func newForward() *Forward {
	return &Forward{stop: make(chan struct{}), done: make(chan struct{}), errOut: &syncBuffer{}}
}

// closeWith closes f when ctx ends.
func (f *Forward) closeWith(ctx context.Context) {
	go func() {
		select {
		case <-ctx.Done():
			f.Close()
		case <-f.done:
		}
	}()
}

// Addr is the local address to connect to.
func (f *Forward) Addr() string { return fmt.Sprintf("127.0.0.1:%d", f.LocalPort) }

// Done is closed when the forward has ended.
func (f *Forward) Done() <-chan struct{} { return f.done }

// Err says why the forward ended (nil after Close).
func (f *Forward) Err() error {
	select {
	case <-f.done:
		return f.err
	default:
		return nil
	}
}

// Close stops the forward and waits until its listener is closed (at most
// 5 s); it is idempotent.
func (f *Forward) Close() {
	f.once.Do(func() { close(f.stop) })
	select {
	case <-f.done:
	case <-time.After(5 * time.Second):
	}
}

func (f *Forward) closed() bool {
	select {
	case <-f.stop:
		return true
	default:
		return false
	}
}

// syncBuffer collects the forwarder's error output from its goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
