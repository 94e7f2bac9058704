package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

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
// does not — and starts the relay js-debug connects to. ours says that kdap
// opened this target's inspector before: one found listening is then
// kdap's, not the target's own, and is closed after use. moved is the port
// kdap moved it to then (0: none).
//
// In a container with several Node.js processes (a cluster), an inspector
// SIGUSR1 opens on the shared default port (9229, the same in every
// process) is moved at once to a free port of its own, so that the next
// worker's SIGUSR1 finds the default port free; openings are serialised
// across the agent's debuggers for the same reason.
func openInspector(pid int, ours bool, moved int, logf func(string, ...any)) (*inspector, error) {
	openMu.Lock()
	defer openMu.Unlock()
	host, port, _ := runtimes.NodeInspectorAddress(cmdlineOf(pid), runtimes.NodeOptions(pid))
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1" // --inspect=0.0.0.0:PORT listens on loopback too
	}
	defaultPort := port
	if moved != 0 {
		port = moved // process.debugPort follows inspector.open(port)
	}
	i := &inspector{pid: pid, conns: map[net.Conn]bool{}}
	// opened finds the inspector: on port, or (--inspect-port=0, or a
	// debugPort kdap did not set) the target's one new listening socket.
	before := listenersOf(pid)
	opened := func() (int, error) {
		for ino, p := range listenersOf(pid) {
			if _, old := before[ino]; !old && (port == 0 || p != port) {
				return p, nil
			}
		}
		if port == 0 {
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
	switch {
	case p != 0 && ours:
		i.addr = net.JoinHostPort(host, strconv.Itoa(p))
		logf("the target's inspector is still open at %s from kdap's last use", i.addr)
	case p != 0:
		i.preexisting = true
		i.addr = net.JoinHostPort(host, strconv.Itoa(p))
		logf("the target's inspector already listens at %s (started with --inspect): kdap leaves it open afterwards", i.addr)
	default:
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
		if p == defaultPort && host == "127.0.0.1" && hasSiblings(hostProc, pid) {
			if err := i.move(logf); err != nil {
				i.shut(logf)
				return nil, err
			}
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		i.end(context.Background(), logf)
		return nil, err
	}
	i.relay = ln
	i.wg.Add(1)
	go i.serveRelay()
	return i, nil
}

// hasSiblings says whether another process runs the same executable in
// the same container (cgroup) as pid: a Node.js cluster's primary and
// workers, whose SIGUSR1 all open the same default port. Moving an
// inspector evaluates JavaScript, which waits while the target's
// JavaScript is busy, so a process alone is left where it opened.
func hasSiblings(fs procfs, pid int) bool {
	me, ok := readProcess(fs, pid)
	if !ok {
		return false
	}
	all, err := readProcesses(fs, os.Getpid())
	if err != nil {
		return false
	}
	self := os.Getpid()
	for _, p := range all {
		if p.pid != pid && p.ppid != self && p.exe == me.exe && p.cgroup == me.cgroup { // (js-debug, the agent's child, may be the same node)
			return true
		}
	}
	return false
}

// openMu serialises inspector openings: two Node.js processes of one pod
// that SIGUSR1 at once would both try the default port.
var openMu sync.Mutex

// move reopens the inspector on a free loopback port — inspector.close()
// then inspector.open(port), from a timer so that the reply is sent and
// kdap's CDP session gone first (close waits for sessions to end) — and
// waits until the new port is the target's and the old one is free.
func (i *inspector) move(logf func(string, ...any)) error {
	ctx, cancel := context.WithTimeout(context.Background(), inspectorWait)
	defer cancel()
	port, err := freeLoopbackPort()
	if err != nil {
		return err
	}
	c, err := dialCDP(ctx, i.addr)
	if err != nil {
		return fmt.Errorf("moving the target's inspector off %s: %w", i.addr, err)
	}
	expr := fmt.Sprintf(`((r) => { const i = r('inspector'); setTimeout(() => { i.close(); i.open(%d, '127.0.0.1'); }, 10); return true; })(typeof require === 'function' ? require : process.mainModule.require)`, port)
	_, err = c.call(ctx, "Runtime.evaluate", map[string]any{"expression": expr, "includeCommandLineAPI": true, "returnByValue": true}, nil)
	c.Close()
	if err != nil {
		return fmt.Errorf("moving the target's inspector off %s: %w", i.addr, err)
	}
	_, oldPort, _ := net.SplitHostPort(i.addr)
	old, _ := strconv.Atoi(oldPort)
	for {
		owner, found := portOwner(port)
		if prev, held := portOwner(old); found && owner == i.pid && (!held || prev != i.pid) {
			break
		}
		if ctx.Err() != nil {
			return fmt.Errorf("the target (pid %d) did not move its inspector from port %d to %d within %s", i.pid, old, port, inspectorWait)
		}
		time.Sleep(5 * time.Millisecond)
	}
	logf("moved the target's inspector from port %d to %d, so that the pod's other Node.js processes can open theirs", old, port)
	i.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	return nil
}

// port is the inspector's port.
func (i *inspector) port() int {
	_, p, _ := net.SplitHostPort(i.addr)
	n, _ := strconv.Atoi(p)
	return n
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

// end stops the relay and, unless the target opened its inspector itself,
// closes the inspector (close). The target runs on: an inspector session
// that ends resumes a paused target.
func (i *inspector) end(ctx context.Context, logf func(string, ...any)) error {
	i.stopRelay()
	if i.preexisting {
		return nil
	}
	return i.close(ctx, logf)
}

// stopRelay closes the relay and its connections and waits for its
// goroutines.
func (i *inspector) stopRelay() {
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
}

// close closes the inspector with process._debugEnd() once the target's
// event loop has turned twice, and checks that the port no longer listens.
// The wait matters: a SIGUSR1 that arrives while JavaScript runs opens the
// inspector twice — at once, through an interrupt, and again when the
// event loop next polls (measured: a closed inspector came back 3.5 s
// later, when a busy request ended). If ctx ends during the wait, the
// inspector is left open for whoever cancelled it (a new session).
func (i *inspector) close(ctx context.Context, logf func(string, ...any)) error {
	quick, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	err := loopTurned(quick, i.addr)
	cancel()
	if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		logf("the target's JavaScript is busy: its inspector at %s closes when the event loop next turns", i.addr)
		err = loopTurned(ctx, i.addr)
	}
	if ctx.Err() != nil {
		return nil // reused before it closed
	}
	if err != nil {
		logf("waiting for the target's event loop: %v", err)
	}
	return i.shut(logf)
}

// shut closes the inspector now and checks that the port no longer
// listens.
func (i *inspector) shut(logf func(string, ...any)) error {
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

// loopTurned returns once the event loop of the target whose inspector is
// at addr has run two iterations (two setImmediate callbacks in a row: the
// second comes after a whole poll phase).
func loopTurned(ctx context.Context, addr string) error {
	c, err := dialCDP(ctx, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.call(ctx, "Runtime.evaluate", map[string]any{"expression": "new Promise(r => setImmediate(() => setImmediate(r)))", "awaitPromise": true}, nil)
	return err
}

// debugEnd asks the inspector at addr to close itself, over the Chrome
// DevTools protocol: Runtime.evaluate("process._debugEnd()"). The
// inspector may close the connection before it replies.
func debugEnd(addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c, err := dialCDP(ctx, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.call(ctx, "Runtime.evaluate", map[string]any{"expression": "process._debugEnd()"}, nil)
	return nil
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
