// Package agent is the program kdap runs inside an ephemeral container next
// to the target. It finds the target process, checks its runtime, and
// serves one TCP port on the pod's loopback: "GET " gets a JSON status
// document, anything else is piped to the debugger (Delve serves DAP and
// JSON-RPC on one port). It owns the debugger's lifecycle: when the last
// client leaves — by disconnect, a dropped connection or kdap being killed —
// breakpoints are cleared and the target runs on; after an idle TTL the
// debugger detaches and the agent exits. It never imports client-go.
package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kdap/kdap/agentapi"
	"github.com/kdap/kdap/dap"
	"github.com/kdap/kdap/runtimes"
)

// Config is the agent's configuration (from its environment).
type Config struct {
	Listen  string        // loopback address to serve on
	Runtime string        // auto or go
	TTL     time.Duration // idle time before the agent detaches and exits
	Dlv     string        // path of the dlv binary
	PID     int           // target pid; 0 finds it (PID 1, or the first non-pause process)
	Log     io.Writer     // the agent's log (its container log)
	Ready   func(addr string)
}

// Run serves until ctx is done or the agent has been idle for cfg.TTL, then
// detaches the debugger (never killing a debugger that holds breakpoints).
func Run(ctx context.Context, cfg Config) error {
	pid := cfg.PID
	if pid == 0 {
		var err error
		if pid, err = findTarget(os.Getpid()); err != nil {
			return err
		}
	}
	var err error
	var target *runtimes.Target
	switch cfg.Runtime {
	case "", "auto", "go":
		target, err = runtimes.InspectGo(pid)
	default:
		err = fmt.Errorf("this debugger image debugs Go programs, not %q: use the %s image (\"image\" in the launch configuration)", cfg.Runtime, cfg.Runtime)
	}
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (another process in the pod uses this port)", cfg.Listen, err)
	}
	a := &agent{cfg: cfg, target: target, ln: ln, lastActive: time.Now(), conns: map[net.Conn]bool{}, dlv: &delve{bin: cfg.Dlv, pid: pid, log: cfg.Log}}
	a.logf("listening at %s; target pid %d (%s, %s, module %s); idle TTL %s", ln.Addr(), pid, target.Exe, target.Version, target.Module, cfg.TTL)
	if cfg.Ready != nil {
		cfg.Ready(ln.Addr().String())
	}
	// Attach Delve now, while kdap is still setting up its port-forward: the
	// first session then finds it ready (measured: ≈ 100 ms off an attach).
	go func() {
		if _, err := a.dlv.ensure(ctx, a.logf); err != nil {
			a.logf("debugger: %v (retrying when a client connects)", err)
		}
	}()
	return a.serve(ctx)
}

type agent struct {
	cfg    Config
	target *runtimes.Target
	ln     net.Listener
	dlv    *delve
	wg     sync.WaitGroup

	mu         sync.Mutex
	active     int
	lastActive time.Time
	conns      map[net.Conn]bool // open client connections, closed at shutdown
}

func (a *agent) logf(format string, args ...any) {
	fmt.Fprintf(a.cfg.Log, "%s kdap-agent: %s\n", time.Now().UTC().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

// serve accepts connections until ctx is done or the TTL passes idle.
func (a *agent) serve(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go a.watchIdle(ctx, cancel)
	go func() {
		<-ctx.Done()
		a.ln.Close()
		a.mu.Lock()
		for c := range a.conns {
			c.Close()
		}
		a.mu.Unlock()
	}()
	for {
		conn, err := a.ln.Accept()
		if err != nil {
			break
		}
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			a.handle(ctx, conn)
		}()
	}
	a.wg.Wait()
	a.logf("shutting down")
	return a.dlv.detach(a.logf)
}

// watchIdle cancels ctx once no client has been connected for the TTL.
func (a *agent) watchIdle(ctx context.Context, cancel func()) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		a.mu.Lock()
		idle := a.active == 0 && time.Since(a.lastActive) > a.cfg.TTL
		a.mu.Unlock()
		if idle {
			a.logf("idle for %s: detaching and exiting", a.cfg.TTL)
			cancel()
			return
		}
	}
}

// handle tells a status request from a debugger session by its first bytes.
func (a *agent) handle(ctx context.Context, conn net.Conn) {
	a.mu.Lock()
	if ctx.Err() != nil {
		a.mu.Unlock()
		conn.Close()
		return
	}
	a.conns[conn] = true
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		delete(a.conns, conn)
		a.mu.Unlock()
		conn.Close()
	}()
	br := bufio.NewReader(conn)
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	first, err := br.Peek(4)
	conn.SetReadDeadline(time.Time{})
	if err != nil {
		return
	}
	if string(first) == "GET " {
		a.serveStatus(conn, br)
		return
	}
	a.session(ctx, &bufferedConn{Conn: conn, r: br})
}

func (a *agent) serveStatus(conn net.Conn, br *bufio.Reader) {
	if _, err := http.ReadRequest(br); err != nil {
		return
	}
	a.mu.Lock()
	st := agentapi.Status{Target: a.target, Listen: a.ln.Addr().String(), TTL: a.cfg.TTL.String(), Sessions: a.active, Debugger: a.dlv.state()}
	a.mu.Unlock()
	body, _ := json.Marshal(st)
	fmt.Fprintf(conn, "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(body))
	conn.Write(body)
}

// session pipes one client to the debugger; when the last client is gone
// the debugger lets the target run on with no breakpoints.
func (a *agent) session(ctx context.Context, client net.Conn) {
	addr, err := a.dlv.ensure(ctx, a.logf)
	if err != nil {
		a.logf("debugger: %v", err)
		refuseDAP(client, err)
		return
	}
	upstream, err := net.Dial("tcp", addr)
	if err != nil {
		a.logf("connecting to the debugger: %v", err)
		return
	}
	a.mu.Lock()
	a.active++
	n := a.active
	a.mu.Unlock()
	a.logf("client %s connected (%d connected)", client.RemoteAddr(), n)

	pipe(client, upstream)

	a.mu.Lock()
	a.active--
	n = a.active
	a.lastActive = time.Now()
	a.mu.Unlock()
	a.logf("client %s left (%d connected)", client.RemoteAddr(), n)
	if n == 0 {
		if err := a.dlv.release(a.logf); err != nil {
			a.logf("releasing the target: %v", err)
		}
	}
}

// refuseDAP answers a DAP client's first request (initialize) with an
// error saying why there is no debugger, so the IDE shows the reason rather
// than a closed connection. Other protocols just see the connection close.
func refuseDAP(conn net.Conn, cause error) {
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	raw, err := dap.NewReader(conn).Read()
	if err != nil {
		return
	}
	req, err := dap.Parse(raw)
	if err != nil || req.Type != "request" {
		return
	}
	msg := "the debugger could not attach: " + cause.Error()
	resp, _ := json.Marshal(map[string]any{
		"seq": 1, "type": "response", "request_seq": req.Seq, "command": req.Command, "success": false, "message": msg,
		"body": map[string]any{"error": map[string]any{"id": 1, "format": msg, "showUser": true}},
	})
	dap.NewWriter(conn).Write(resp)
}

// pipe copies both ways until either side ends, then closes both.
func pipe(a, b net.Conn) {
	done := make(chan struct{}, 2)
	go func() { io.Copy(b, a); done <- struct{}{} }()
	go func() { io.Copy(a, b); done <- struct{}{} }()
	<-done
	a.Close()
	b.Close()
	<-done
}

// bufferedConn is a net.Conn whose first bytes were peeked.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// findTarget returns the target's pid: 1, unless PID 1 is the pod's pause
// process (shareProcessNamespace), then the lowest pid that is neither pause
// nor this agent.
func findTarget(self int) (int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	var pids []int
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil && pid != self {
			pids = append(pids, pid)
		}
	}
	lowest := 0
	for _, pid := range pids {
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err != nil || filepath.Base(exe) == "pause" || isAncestorOf(pid, self) {
			continue
		}
		if lowest == 0 || pid < lowest {
			lowest = pid
		}
	}
	if lowest == 0 {
		return 0, runtimes.ErrNoTarget
	}
	return lowest, nil
}

// isAncestorOf reports whether pid is a parent (or further ancestor) of
// child — the agent's own process tree is never the target.
func isAncestorOf(pid, child int) bool {
	for p := child; p > 1; {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			return false
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			return false
		}
		fields := strings.Fields(s[i+1:])
		if len(fields) < 2 {
			return false
		}
		p, _ = strconv.Atoi(fields[1])
		if p == pid {
			return true
		}
	}
	return false
}
