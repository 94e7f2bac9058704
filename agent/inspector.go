package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/websocket"

	"github.com/kdap/kdap/runtimes"
)

// inspector is a Node.js target's inspector as the agent uses it: opened
// with SIGUSR1 (unless the target was started with it open), reached by
// js-debug through a relay that acknowledges every read at once, and closed
// again with process._debugEnd() after the last session, so that it is not
// left open to every process in the pod.
//
// Goroutines: the relay's accept loop, and two copiers per relayed
// connection; close stops them all and waits for them.
type inspector struct {
	pid         int
	addr        string // host:port the target's inspector listens on
	preexisting bool   // the target was listening before kdap came: leave it open
	relay       net.Listener

	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]bool
}

// inspectorWait bounds how long the target may take to open its inspector
// after SIGUSR1 (measured: 3–10 ms).
const inspectorWait = 3 * time.Second

// openInspector makes sure pid's inspector listens — sending SIGUSR1 if it
// does not — and starts the relay js-debug connects to.
func openInspector(pid int, logf func(string, ...any)) (*inspector, error) {
	host, port, _ := runtimes.NodeInspectorAddress(cmdlineOf(pid), runtimes.NodeOptions(pid))
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1" // --inspect=0.0.0.0:PORT listens on loopback too
	}
	i := &inspector{pid: pid, conns: map[net.Conn]bool{}}
	// opened finds the inspector: on port, or (--inspect-port=0) the
	// target's one new listening socket.
	before := listenersOf(pid)
	opened := func() (int, error) {
		if port == 0 {
			for ino, p := range listenersOf(pid) {
				if _, old := before[ino]; !old {
					return p, nil
				}
			}
			return 0, nil
		}
		owner, found := portOwner(port)
		switch {
		case found && owner == pid:
			return port, nil
		case found:
			return 0, portTakenError(pid, port, owner)
		}
		return 0, nil
	}
	p, err := opened()
	if err != nil {
		return nil, err
	}
	if p != 0 {
		i.preexisting = true
		i.addr = net.JoinHostPort(host, strconv.Itoa(p))
		logf("the target's inspector already listens at %s (started with --inspect): kdap leaves it open afterwards", i.addr)
	} else {
		start := time.Now()
		if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
			return nil, signalError(pid, err)
		}
		for p == 0 {
			if p, err = opened(); err != nil {
				return nil, err
			}
			if p == 0 && time.Since(start) > inspectorWait {
				return nil, fmt.Errorf("the target (pid %d) did not open its inspector on port %d within %s of SIGUSR1: its log says why (Node.js prints \"Starting inspector on … failed\" when the port is taken by a process the debugger cannot see)",
					pid, port, inspectorWait)
			}
			if p == 0 {
				time.Sleep(5 * time.Millisecond)
			}
		}
		i.addr = net.JoinHostPort(host, strconv.Itoa(p))
		logf("SIGUSR1 opened the target's inspector at %s in %s", i.addr, time.Since(start).Round(time.Millisecond))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		i.end(logf)
		return nil, err
	}
	i.relay = ln
	i.wg.Add(1)
	go i.serveRelay()
	return i, nil
}

// relayAddr is where js-debug attaches (the inspector, through the relay).
func (i *inspector) relayAddr() string { return i.relay.Addr().String() }

// serveRelay relays each connection to the inspector. The inspector sends
// a reply right after an event; with delayed ACKs on the reader's side
// Nagle holds the reply back ≈ 40 ms (measured: variables 47 ms → 3 ms with
// TCP_QUICKACK), so the relay acknowledges every read at once.
func (i *inspector) serveRelay() {
	defer i.wg.Done()
	for {
		c, err := i.relay.Accept()
		if err != nil {
			return
		}
		up, err := net.DialTimeout("tcp", i.addr, 5*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		if !i.track(c, up) {
			return
		}
		i.wg.Add(2)
		go func() { defer i.wg.Done(); quickCopy(up, c); up.Close(); c.Close() }()
		go func() { defer i.wg.Done(); quickCopy(c, up); up.Close(); c.Close(); i.untrack(c, up) }()
	}
}

func (i *inspector) track(cs ...net.Conn) bool {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.conns == nil {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	for _, c := range cs {
		i.conns[c] = true
	}
	return true
}

func (i *inspector) untrack(cs ...net.Conn) {
	i.mu.Lock()
	defer i.mu.Unlock()
	for _, c := range cs {
		delete(i.conns, c)
	}
}

// quickCopy copies src to dst, acknowledging each read of src at once.
func quickCopy(dst, src net.Conn) {
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		quickAck(src)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// quickAck sets TCP_QUICKACK, which the kernel clears again after a while:
// it is set after every read.
func quickAck(c net.Conn) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return
	}
	raw.Control(func(fd uintptr) {
		syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
	})
}

// end stops the relay and, unless the target opened its inspector itself,
// closes the inspector (process._debugEnd()) and checks that the port no
// longer listens. The target runs on: an inspector session that ends
// resumes a paused target.
func (i *inspector) end(logf func(string, ...any)) error {
	if i.relay != nil {
		i.relay.Close()
	}
	i.mu.Lock()
	for c := range i.conns {
		c.Close()
	}
	i.conns = nil
	i.mu.Unlock()
	i.wg.Wait()
	if i.preexisting {
		return nil
	}
	_, port, _ := net.SplitHostPort(i.addr)
	p, _ := strconv.Atoi(port)
	err := debugEnd(i.addr)
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if owner, found := portOwner(p); !found || owner != i.pid {
			logf("closed the target's inspector at %s", i.addr)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the target's inspector at %s is still open after process._debugEnd() (%v)", i.addr, err)
		}
	}
}

// debugEnd asks the inspector at addr to close itself, over the Chrome
// DevTools protocol: Runtime.evaluate("process._debugEnd()").
func debugEnd(addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/json/list", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	var targets []struct {
		WebSocketDebuggerURL string `json:"webSocketDebuggerUrl"`
	}
	err = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&targets)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("inspector target list: %w", err)
	}
	if len(targets) == 0 || targets[0].WebSocketDebuggerURL == "" {
		return errors.New("the inspector lists no target")
	}
	ws, _, err := websocket.DefaultDialer.DialContext(ctx, targets[0].WebSocketDebuggerURL, nil)
	if err != nil {
		return err
	}
	defer ws.Close()
	ws.SetReadDeadline(time.Now().Add(3 * time.Second))
	if err := ws.WriteJSON(map[string]any{"id": 1, "method": "Runtime.evaluate", "params": map[string]any{"expression": "process._debugEnd()"}}); err != nil {
		return err
	}
	for { // until the reply, or the inspector closing the connection
		var msg struct {
			ID int `json:"id"`
		}
		if err := ws.ReadJSON(&msg); err != nil || msg.ID == 1 {
			return nil
		}
	}
}

func portTakenError(pid, port, owner int) error {
	who := "a process the debugger cannot see (in another container of the pod, or another user's)"
	if owner > 0 {
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", owner))
		who = fmt.Sprintf("pid %d (%s)", owner, exe)
	}
	return fmt.Errorf("the target (pid %d) cannot open its inspector: port %d of the pod is taken by %s; stop that process's inspector, or start the target with --inspect-port=PORT on a free port",
		pid, port, who)
}

func signalError(pid int, err error) error {
	if errors.Is(err, syscall.EPERM) {
		uid, _ := runtimes.ProcessIDs(pid)
		return fmt.Errorf("may not send SIGUSR1 to the target (pid %d, uid %d): %v; the debugger container must run as the target's user, or as root with CAP_KILL: set runAsUser in the pod's securityContext",
			pid, uid, err)
	}
	return fmt.Errorf("sending SIGUSR1 to the target (pid %d): %w", pid, err)
}

// cmdlineOf is the argument vector of pid.
func cmdlineOf(pid int) []string {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil
	}
	return strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
}
