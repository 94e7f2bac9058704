package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/kdap/kdap/runtimes"
)

func init() { register(runtimes.Node, newJSDebug) }

// jsDebug runs Microsoft's js-debug standalone DAP server in the agent and
// gives each client one session on it (see jsSession): the first session
// opens the target's inspector with SIGUSR1, and when the last session has
// ended — js-debug detached, the target resumed — the inspector is closed
// again. js-debug itself stays up until the agent exits.
//
// Goroutines: js-debug's output scanner and waiter (while it runs), and per
// client one jsSession with its readers, counted in sessions.
type jsDebug struct {
	node, server string // the Node.js that runs js-debug, and its server script
	target       *runtimes.Target
	log          io.Writer

	proc serverProcess // js-debug's server

	inspMu   sync.Mutex // guards the fields below; held while the inspector opens
	insp     *inspector // open while sessions run
	sessions int
	closed   chan struct{} // closed when the inspector is closed after the last session
	ours     bool          // kdap has opened the target's inspector before
	moved    int           // the port kdap's last opening left it on (process.debugPort)
	closing  *closer       // the last inspector's close, while it waits for the event loop
}

// closer is an inspector's close under way.
type closer struct {
	insp   *inspector
	cancel context.CancelFunc // keeps the inspector open for a new session
	done   chan struct{}
}

func newJSDebug(cfg Config, t *runtimes.Target) (debugger, error) {
	node := cfg.setting(runtimes.NodeBinEnv, runtimes.NodeBinDefault)
	server := cfg.setting(runtimes.JSDebugEnv, runtimes.JSDebugDefault)
	if err := requireFiles(runtimes.Node, node, server); err != nil {
		return nil, err
	}
	return &jsDebug{node: node, server: server, target: t, log: cfg.Log,
		proc: serverProcess{name: "js-debug", marker: "Debug server listening at ", timeout: 30 * time.Second, log: cfg.Log}}, nil
}

func (j *jsDebug) state() string { return j.proc.state() }

// prepare starts js-debug now (ensure).
func (j *jsDebug) prepare(ctx context.Context, logf func(string, ...any)) error {
	_, err := j.ensure(ctx, logf)
	return err
}

// ensure starts js-debug's DAP server on a loopback port, unless it runs.
func (j *jsDebug) ensure(ctx context.Context, logf func(string, ...any)) (string, error) {
	start := time.Now()
	srv, started, err := j.proc.ensure(ctx, logf, func(socket string) *exec.Cmd {
		// js-debug's server takes "[port|socket path] [host]".
		cmd := exec.Command(j.node, j.server, socket)
		// js-debug must not outlive the agent: when it ends, its inspector
		// sessions end and the target resumes (measured: 10–45 ms).
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
		return cmd
	}, func(output string) error { return fmt.Errorf("js-debug exited while starting: %s", output) }, nil)
	if err != nil {
		return "", err
	}
	if started {
		logf("js-debug serves DAP at %s (started in %s)", srv.addr, time.Since(start).Round(time.Millisecond))
	}
	return srv.addr, nil
}

// connect opens the target's inspector (the first session does), and
// returns one end of an in-process connection whose other end a jsSession
// serves: the client sees one DAP session.
func (j *jsDebug) connect(ctx context.Context, logf func(string, ...any)) (net.Conn, error) {
	addr, err := j.ensure(ctx, logf)
	if err != nil {
		return nil, err
	}
	j.inspMu.Lock()
	defer j.inspMu.Unlock()
	if err := j.openLocked(logf); err != nil {
		return nil, err
	}
	j.sessions++
	ours, theirs := net.Pipe()
	s := &jsSession{client: theirs, server: addr, relay: j.insp.relayAddr(), target: j.target, logf: logf}
	go func() {
		s.run()
		j.sessionEnded(logf)
	}()
	return ours, nil
}

// openLocked opens the target's inspector unless it is open, taking over
// one whose close waits for the event loop. inspMu is held.
func (j *jsDebug) openLocked(logf func(string, ...any)) error {
	if j.insp != nil {
		return nil
	}
	if j.closing != nil {
		j.closing.cancel()
		<-j.closing.done
		j.closing = nil
	}
	insp, err := openInspector(j.target.PID, j.ours, j.moved, logf)
	if err != nil {
		return err
	}
	if !insp.preexisting {
		j.ours, j.moved = true, insp.port()
	}
	j.insp, j.closed = insp, make(chan struct{})
	return nil
}

// sessionEnded closes the inspector when the last session is over: in the
// background, as the close may wait for the target's event loop.
func (j *jsDebug) sessionEnded(logf func(string, ...any)) {
	j.inspMu.Lock()
	defer j.inspMu.Unlock()
	j.sessions--
	if j.sessions > 0 || j.insp == nil {
		return
	}
	insp, closed := j.insp, j.closed
	j.insp = nil
	ctx, cancel := context.WithCancel(context.Background())
	c := &closer{insp: insp, cancel: cancel, done: make(chan struct{})}
	j.closing = c
	go func() {
		defer close(c.done)
		defer close(closed)
		if err := insp.end(ctx, logf); err != nil {
			logf("%v", err)
		}
	}()
}

// release waits (at most 5 s) until the last session has let go of the
// target and the inspector is closed.
func (j *jsDebug) release(logf func(string, ...any)) error {
	j.inspMu.Lock()
	closed := j.closed
	j.inspMu.Unlock()
	if closed == nil {
		return nil
	}
	select {
	case <-closed:
		j.inspMu.Lock()
		if j.closed == closed {
			j.closed = nil
		}
		j.inspMu.Unlock()
		logf("no client left: js-debug has let go of the target and its inspector is closed")
		return nil
	case <-time.After(5 * time.Second):
		return errors.New("after 5 s a js-debug session is still ending, or the target's inspector still waits for its busy event loop to close")
	}
}

// detach releases the target and stops js-debug before the agent exits.
// An inspector close still waiting for a busy event loop closes now.
func (j *jsDebug) detach(logf func(string, ...any)) error {
	defer j.proc.hold()() // wait for a start under way; no new one after this
	err := j.release(logf)
	j.inspMu.Lock()
	if c := j.closing; c != nil && err != nil {
		c.cancel()
		<-c.done
		j.closing = nil
		logf("the target's JavaScript stayed busy: closing its inspector without waiting for its event loop (Node.js may open it again when the loop turns, with no kdap left to close it)")
		if cerr := c.insp.shut(logf); cerr != nil {
			logf("%v", cerr)
		}
	}
	j.inspMu.Unlock()
	if cmd, _ := j.proc.running(); cmd != nil {
		cmd.Process.Signal(syscall.SIGTERM) // no session is left: nothing holds the target
	}
	logf("js-debug stopped; the target runs on")
	return err
}
