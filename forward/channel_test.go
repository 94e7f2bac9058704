package forward

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	neturl "net/url"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"k8s.io/client-go/rest"
)

// streamingServer plays a runtime's streaming server in the channel
// protocol (its side is not reachable otherwise for the failures below):
// it starts both channels with the port, then serves as behave says.
func streamingServer(t *testing.T, behave func(ws *websocket.Conn)) string {
	t.Helper()
	up := websocket.Upgrader{Subprotocols: []string{channelProtocol}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		for _, ch := range []byte{dataChannel, errorChannel} {
			ws.WriteMessage(websocket.BinaryMessage, []byte{ch, 0x90, 0x1f}) // 8080
		}
		behave(ws)
	}))
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http")
}

func dialTest(t *testing.T, url string) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{channelProtocol}}
	ws, _, err := d.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ws
}

// echo sends back what comes on the data channel, split in two messages.
func echo(ws *websocket.Conn) {
	for {
		_, b, err := ws.ReadMessage()
		if err != nil {
			return
		}
		if len(b) < 2 || b[0] != dataChannel {
			continue
		}
		half := 1 + (len(b)-1)/2
		ws.WriteMessage(websocket.BinaryMessage, b[:half])
		ws.WriteMessage(websocket.BinaryMessage, append([]byte{dataChannel}, b[half:]...))
	}
}

func startPipe(t *testing.T, url string) (net.Conn, <-chan error) {
	local, user := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- pipe(local, dialTest(t, url)) }()
	t.Cleanup(func() { user.Close() })
	return user, done
}

func wait(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("pipe did not end")
		return nil
	}
}

func TestPipeCarriesDataWithoutThePortHeaders(t *testing.T) {
	user, done := startPipe(t, streamingServer(t, echo))
	for _, msg := range []string{"hello", strings.Repeat("x", 100_000)} {
		go user.Write([]byte(msg))
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(user, got); err != nil || string(got) != msg {
			t.Fatalf("read %d bytes back (%v); want the %d written", len(got), err, len(msg))
		}
	}
	user.Close()
	if err := wait(t, done); err != nil {
		t.Errorf("a connection closed on this side ended with %v; want nil", err)
	}
}

func TestPipeReturnsThePodsRefusal(t *testing.T) {
	const refusal = "error forwarding port 8080 to pod web: dial tcp4 127.0.0.1:8080: connect: connection refused"
	user, done := startPipe(t, streamingServer(t, func(ws *websocket.Conn) {
		ws.WriteMessage(websocket.BinaryMessage, append([]byte{errorChannel}, refusal...))
		ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
	}))
	err := wait(t, done)
	var pe *PodError
	if !errors.As(err, &pe) || pe.Text != refusal {
		t.Fatalf("pipe ended with %v; want the pod's refusal %q", err, refusal)
	}
	if n, err := user.Read(make([]byte, 1)); err == nil {
		t.Errorf("the local connection is still open after the refusal (read %d bytes)", n)
	}
}

func TestPipeEndsQuietlyWhenTheServerJustCloses(t *testing.T) {
	_, done := startPipe(t, streamingServer(t, func(ws *websocket.Conn) {
		ws.NetConn().Close() // no close frame, as the streaming servers often do
	}))
	if err := wait(t, done); err != nil {
		t.Errorf("pipe ended with %v; want nil: the server ended the connection", err)
	}
}

func TestPipeReportsAnAbortedWebsocket(t *testing.T) {
	_, done := startPipe(t, streamingServer(t, func(ws *websocket.Conn) {
		ws.NetConn().(*net.TCPConn).SetLinger(0)
		ws.NetConn().Close() // a reset: the connection broke
	}))
	err := wait(t, done)
	var pe *PodError
	if err == nil || errors.As(err, &pe) {
		t.Fatalf("pipe ended with %v; want the websocket's failure", err)
	}
}

func TestPipeKeepsAnIdleConnectionAlive(t *testing.T) {
	defer func(d time.Duration) { keepAlive = d }(keepAlive)
	keepAlive = 20 * time.Millisecond
	var empty atomic.Int32
	user, done := startPipe(t, streamingServer(t, func(ws *websocket.Conn) {
		for {
			_, b, err := ws.ReadMessage()
			if err != nil {
				return
			}
			if len(b) == 0 { // what the streaming servers skip, resetting their idle timer
				empty.Add(1)
			}
		}
	}))
	time.Sleep(200 * time.Millisecond)
	user.Close()
	wait(t, done)
	if n := empty.Load(); n < 3 {
		t.Errorf("%d empty messages in 200 ms with a 20 ms keep-alive; want several", n)
	}
}

// fakeDialer dials the fake streaming server at url as the API server.
func fakeDialer(t *testing.T, url string) *Dialer {
	t.Helper()
	u, err := neturl.Parse(strings.Replace(url, "ws", "http", 1) + "/api/v1/namespaces/shop/pods/web/portforward")
	if err != nil {
		t.Fatal(err)
	}
	ch, err := newChannelDialer(&rest.Config{Host: u.Host}, u)
	if err != nil {
		t.Fatal(err)
	}
	return &Dialer{channel: ch}
}

func TestChannelForwardCarriesEachConnectionAndLeavesNothing(t *testing.T) {
	d := fakeDialer(t, streamingServer(t, echo))
	time.Sleep(50 * time.Millisecond) // earlier tests' servers end
	before := runtime.NumGoroutine()
	f, err := Start(context.Background(), d, 0, 8080)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 { // the first on Start's websocket, the others on their own
		c, err := net.Dial("tcp", f.Addr())
		if err != nil {
			t.Fatal(err)
		}
		msg := fmt.Sprintf("connection %d", i)
		c.Write([]byte(msg))
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
			t.Fatalf("connection %d read %q (%v); want %q", i, got, err, msg)
		}
		c.Close()
	}
	f.Close()
	if err := f.Err(); err != nil {
		t.Errorf("a closed forward says %v; want nil", err)
	}
	if _, err := net.Dial("tcp", f.Addr()); err == nil {
		t.Error("the forward's listener is still open after Close")
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines after Close, %d before Start", n, before)
	}
}

func TestChannelForwardEndsWithThePodsRefusal(t *testing.T) {
	const refusal = "connect: connection refused"
	f, err := Start(context.Background(), fakeDialer(t, streamingServer(t, func(ws *websocket.Conn) {
		ws.WriteMessage(websocket.BinaryMessage, append([]byte{errorChannel}, refusal...))
	})), 0, 8080)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := net.Dial("tcp", f.Addr())
	if err != nil {
		t.Fatal(err)
	}
	c.Read(make([]byte, 1))
	c.Close()
	select {
	case <-f.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("a refused connection did not end the forward")
	}
	if err := f.Err(); !errors.Is(err, ErrLost) || !strings.Contains(err.Error(), refusal) {
		t.Errorf("the forward ended with %v; want ErrLost with the pod's %q", err, refusal)
	}
}
