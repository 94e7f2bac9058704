package forward

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/transport"
	wstransport "k8s.io/client-go/transport/websocket"
)

// Kubernetes's own websocket port-forward protocol, which the kubelet and
// the container runtimes' streaming servers (containerd, CRI-O) serve
// beside SPDY, and the API server passes through untouched: one websocket
// per connection to one port (?ports=P), carrying binary messages whose
// first byte names the channel — 0 the connection's bytes, 1 the pod
// side's error text — each channel starting with the port, two bytes
// little-endian. It has no SPDY under it, so a forward does not hold
// spdystream's zlib header compressor (≈ 0.78 MB a connection, kept for
// the connection's life).
const channelProtocol = "v4.channel.k8s.io"

const (
	dataChannel  = 0
	errorChannel = 1
)

// keepAlive is how often an idle connection sends an empty message: the
// streaming servers close a websocket that has sent nothing for their idle
// timeout (4 h by default, 5 min on some hardened nodes), even while the
// pod side is sending.
var keepAlive = 30 * time.Second

// channelDialer opens websockets to one pod's portforward subresource.
type channelDialer struct {
	transport *transport.Config
	tls       *tls.Config
	proxy     func(*http.Request) (*url.URL, error)
	url       *url.URL
}

func newChannelDialer(cfg *rest.Config, u *url.URL) (*channelDialer, error) {
	tc, err := cfg.TransportConfig()
	if err != nil {
		return nil, err
	}
	tlsCfg, err := transport.TLSConfigFor(tc)
	if err != nil {
		return nil, err
	}
	proxy := cfg.Proxy
	if proxy == nil {
		proxy = utilnet.NewProxierWithNoProxyCIDR(http.ProxyFromEnvironment) // as client-go's dialers
	}
	return &channelDialer{transport: tc, tls: tlsCfg, proxy: proxy, url: u}, nil
}

// dial opens a websocket forwarded to podPort. An upgrade the server
// refuses is an *httpstream.UpgradeFailureError.
func (d *channelDialer) dial(ctx context.Context, podPort int) (*websocket.Conn, error) {
	u := *d.url
	q := u.Query()
	q.Set("ports", strconv.Itoa(podPort))
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	rt := &wstransport.RoundTripper{TLSConfig: d.tls, Proxier: d.proxy} // one per connection, as its doc asks
	wrapped, err := transport.HTTPWrappersForConfig(d.transport, rt)
	if err != nil {
		return nil, err
	}
	return wstransport.Negotiate(wrapped, rt, req, channelProtocol)
}

// pipe relays between local and ws, one forwarded connection, until
// either side ends, and closes both. It returns the pod side's error
// text (e.g. the port refused the connection) as a *PodError, the
// websocket's failure as lost, or nil when a side closed.
func pipe(local net.Conn, ws *websocket.Conn) error {
	every := keepAlive
	var wmu sync.Mutex // gorilla allows one writer at a time
	write := func(p []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		ws.SetWriteDeadline(time.Now().Add(every))
		return ws.WriteMessage(websocket.BinaryMessage, p)
	}
	sent := make(chan struct{})   // closed when local has nothing more
	closed := make(chan struct{}) // closed when the goodbye is said
	go func() {
		defer close(sent)
		buf := make([]byte, 1+32*1024)
		buf[0] = dataChannel
		for {
			n, err := local.Read(buf[1:])
			if n > 0 && write(buf[:1+n]) != nil {
				return
			}
			if err != nil {
				return
			}
		}
	}()
	go func() { // keep an idle connection alive; say goodbye after local's end
		defer close(closed)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				write(nil)
			case <-sent:
				wmu.Lock()
				ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
				wmu.Unlock()
				ws.Close() // ends the reader below
				return
			}
		}
	}()
	err := receive(local, ws)
	local.Close()
	<-closed
	ws.Close()
	return err
}

// PodError is what the pod side of a forwarded connection said went
// wrong, e.g. that nothing listens on the port.
type PodError struct{ Text string }

func (e *PodError) Error() string { return e.Text }

// receive copies the data channel to local until the websocket ends.
func receive(local io.Writer, ws *websocket.Conn) error {
	var header [2]int // port bytes still to skip, by channel
	header[dataChannel], header[errorChannel] = 2, 2
	var podErr strings.Builder
	for {
		typ, r, err := ws.NextReader()
		if err != nil {
			switch {
			case podErr.Len() > 0:
				return &PodError{Text: strings.TrimSpace(podErr.String())}
			case websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseAbnormalClosure) || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed):
				// The server ended it (the streaming servers often close
				// without a close frame once the pod side has), or this
				// side did. A cut connection fails otherwise (reset,
				// aborted, timed out).
				return nil
			}
			return err
		}
		var ch [1]byte
		if typ != websocket.BinaryMessage || readFull(r, ch[:]) != nil || int(ch[0]) >= len(header) {
			continue
		}
		if header[ch[0]] > 0 {
			n, _ := io.CopyN(io.Discard, r, int64(header[ch[0]]))
			header[ch[0]] -= int(n)
		}
		switch ch[0] {
		case dataChannel:
			if _, err := io.Copy(local, r); err != nil {
				return nil // local has gone
			}
		case errorChannel:
			io.Copy(&podErr, io.LimitReader(r, 64<<10))
		}
	}
}

func readFull(r io.Reader, p []byte) error {
	_, err := io.ReadFull(r, p)
	return err
}

// spareFor bounds how long Start's websocket, which connects to the pod
// port at once (the protocol has no upgrade without a connection), waits
// for the first local connection. kdap reads the agent's status right
// after Start, and so saves an upgrade (≈ 10 ms); later, it is closed, so
// a server sees at most that one early connection, opened and closed.
// Longer is not safe: a Node.js server held one for 1 s did not answer the
// request it carried (not understood), and the agent drops a connection
// that does not answer its challenge within 10 s.
const spareFor = 250 * time.Millisecond

// startChannel forwards with one websocket per local connection; first,
// opened by Start, carries the first connection accepted soon enough.
func startChannel(ctx context.Context, d *channelDialer, first *websocket.Conn, localPort, podPort int) (*Forward, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(localPort)))
	if err != nil {
		first.Close()
		return nil, fmt.Errorf("port-forward to pod port %d: %w", podPort, err)
	}
	f := newForward()
	f.LocalPort = ln.Addr().(*net.TCPAddr).Port
	dialCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &channelServer{f: f, d: d, ln: ln, port: podPort, cancel: cancel,
		spare: first, spareUntil: time.Now().Add(spareFor), open: map[io.Closer]bool{}, failed: make(chan struct{})}
	go s.serve(dialCtx)
	f.closeWith(ctx)
	return f, nil
}

// channelServer is a Forward's accept loop in the channel protocol.
type channelServer struct {
	f      *Forward
	d      *channelDialer
	ln     net.Listener
	port   int
	cancel context.CancelFunc // of the dials in flight

	mu         sync.Mutex
	spare      *websocket.Conn // Start's, until taken or too old
	spareUntil time.Time
	open       map[io.Closer]bool // local connections and websockets in use
	ending     bool
	lost       error         // the first failure, which ends the forward
	failed     chan struct{} // closed with it
}

func (s *channelServer) serve(ctx context.Context) {
	served := make(chan struct{})
	defer close(served)
	go func() {
		select {
		case <-s.f.stop:
		case <-s.failed:
		case <-served: // the listener failed by itself
		}
		s.shut()
	}()
	var wg sync.WaitGroup
	for {
		local, err := s.ln.Accept()
		if err != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.carry(ctx, local)
		}()
	}
	s.shut() // the listener failed by itself
	wg.Wait()
	if !s.f.closed() {
		s.mu.Lock()
		s.f.err = ErrLost
		if s.lost != nil {
			s.f.err = fmt.Errorf("%w: %w", ErrLost, s.lost)
		}
		s.mu.Unlock()
	}
	close(s.f.done)
}

// shut closes the listener and every connection still open.
func (s *channelServer) shut() {
	s.cancel()
	s.ln.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ending = true
	for c := range s.open {
		c.Close()
	}
	if s.spare != nil {
		s.spare.Close()
		s.spare = nil
	}
}

// fail ends the forward with err, the first failure.
func (s *channelServer) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lost == nil {
		s.lost = err
		close(s.failed)
	}
}

// track notes c as open, or closes it if the forward is ending.
func (s *channelServer) track(c io.Closer) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ending {
		c.Close()
		return false
	}
	s.open[c] = true
	return true
}

func (s *channelServer) untrack(c io.Closer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.open, c)
}

// takeSpare returns Start's websocket if it is still fresh, once.
func (s *channelServer) takeSpare() *websocket.Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	ws := s.spare
	s.spare = nil
	if ws != nil && time.Now().After(s.spareUntil) {
		ws.Close()
		ws = nil
	}
	return ws
}

// carry forwards one local connection through a websocket of its own.
func (s *channelServer) carry(ctx context.Context, local net.Conn) {
	if !s.track(local) {
		return
	}
	defer s.untrack(local)
	ws := s.takeSpare()
	if ws == nil {
		var err error
		if ws, err = s.d.dial(ctx, s.port); err != nil {
			local.Close()
			if ctx.Err() == nil {
				s.fail(err)
			}
			return
		}
	}
	if !s.track(ws) {
		local.Close()
		return
	}
	defer s.untrack(ws)
	if err := pipe(local, ws); err != nil {
		s.fail(err)
	}
}
