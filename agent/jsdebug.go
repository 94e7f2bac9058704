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

	inspMu   sync.Mutex // guards the inspector and the session count; held while it opens or closes
	insp     *inspector // open while sessions run
	sessions int
	closed   chan struct{} // closed when the inspector is closed after the last session
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
	srv, started, err := j.proc.ensure(ctx, logf, func() *exec.Cmd {
		cmd := exec.Command(j.node, j.server, "0", "127.0.0.1")
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
	if j.insp == nil {
		if j.insp, err = openInspector(j.target.PID, logf); err != nil {
			return nil, err
		}
		j.closed = make(chan struct{})
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

// sessionEnded closes the inspector when the last session is over.
func (j *jsDebug) sessionEnded(logf func(string, ...any)) {
	j.inspMu.Lock()
	defer j.inspMu.Unlock()
	j.sessions--
	if j.sessions > 0 || j.insp == nil {
		return
	}
	if err := j.insp.end(logf); err != nil {
		logf("%v", err)
	}
	j.insp = nil
	close(j.closed)
}

// release waits (at most 5 s) until the last session has let go of the
// target and closed the inspector.
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
		return errors.New("a js-debug session is still ending after 5s")
	}
}

// detach releases the target and stops js-debug before the agent exits.
func (j *jsDebug) detach(logf func(string, ...any)) error {
	defer j.proc.hold()() // wait for a start under way; no new one after this
	err := j.release(logf)
	if cmd, _ := j.proc.running(); cmd != nil {
		cmd.Process.Signal(syscall.SIGTERM) // no session is left: nothing holds the target
	}
	logf("js-debug stopped; the target runs on")
	return err
}
