package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/rpc"
	"net/rpc/jsonrpc"
	"os"
	"os/exec"
	"time"

	"github.com/go-delve/delve/service/api"
	"github.com/go-delve/delve/service/rpc2"

	"github.com/kdap/kdap/runtimes"
)

func init() { register(runtimes.Go, newDelve) }

// DlvEnv names the dlv binary in the Go debugger image (default /dlv).
const DlvEnv = "KDAP_DLV"

func newDelve(cfg Config, t *runtimes.Target) (debugger, error) {
	bin := cfg.setting(DlvEnv, "/dlv")
	if err := requireFiles(runtimes.Go, bin); err != nil {
		return nil, err
	}
	return &delve{bin: bin, pid: t.PID, exe: t.Exe, goVersion: t.Version, proc: serverProcess{name: "dlv", marker: "API server listening at: ", timeout: 60 * time.Second, log: cfg.Log}}, nil
}

// delve runs `dlv attach` on the target, at most one at a time, started on
// the first client and again if it has exited.
type delve struct {
	bin       string
	pid       int
	exe       string        // the target's executable, as the pod sees it
	goVersion string        // the target's Go version (go1.26.1)
	proc      serverProcess // dlv; Delve prints "API server listening at: SOCKET" once it serves
}

func (d *delve) state() string { return d.proc.state() }

// connect dials the debugger, starting it if needed.
func (d *delve) connect(ctx context.Context, logf func(string, ...any)) (net.Conn, error) {
	addr, _, err := d.ensure(ctx, logf)
	if err != nil {
		return nil, err
	}
	return dialServer(addr, 5*time.Second)
}

// prepare attaches Delve to the target now (ensure).
func (d *delve) prepare(ctx context.Context, logf func(string, ...any)) error {
	_, _, err := d.ensure(ctx, logf)
	return err
}

// ensure returns the address of a running Delve, starting it if needed;
// a Delve started now has resumed the target (dlv attach halts it while it
// loads the binary's debug information), and started says so.
func (d *delve) ensure(ctx context.Context, logf func(string, ...any)) (addr string, started bool, err error) {
	start := time.Now()
	srv, started, err := d.proc.ensure(ctx, logf, func(socket string) *exec.Cmd {
		args := runtimes.DelveCommand(d.bin, d.pid, "unix:"+socket)
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = append(os.Environ(), runtimes.DelveEnv...)
		return cmd
	}, func(output string) error {
		return fmt.Errorf("dlv exited while attaching to pid %d: %s (the debugger container needs SYS_PTRACE, or to run as the target's user on a node whose kernel.yama.ptrace_scope is 0)", d.pid, output)
	}, func(srv *server) error {
		if err := resume(srv.addr); err != nil {
			return fmt.Errorf("resuming the target after attaching: %w; %s", err, d.targetState())
		}
		return nil
	})
	if err != nil {
		return "", false, err
	}
	if started {
		logf("dlv attached to pid %d in %s, serving at %s; target resumed", d.pid, time.Since(start).Round(time.Millisecond), srv.addr)
	}
	return srv.addr, started, nil
}

// resume continues the target that `dlv attach` (or a halt) stopped, on a
// JSON-RPC connection kept open until that continue returns (when a client
// halts the target or it hits a breakpoint), and returns once Delve runs
// the target. Returning sooner lets a client's halt reach Delve before the
// continue begins: Delve's Continue drops a manual stop requested before
// it, so that halt would answer at once, the target would run on, and the
// client's next request (a breakpoint) would wait behind the continue for
// ever — seen in CI as a JSON-RPC client and a bench's setBreakpoints that
// never got an answer.
//
// The state request that tells it goes on the continue's own connection,
// written after the continue: Delve reads a connection's next request only
// once the call before it has resumed the target (or returned), and by then
// it reports the target running without waiting on it. On another
// connection the same request can block until the continue ends: Delve's
// Command takes the target's lock before it marks the target running, and
// its State takes that lock when the mark is not yet there (v1.27.2,
// service/debugger/debugger.go) — seen in CI under the race detector.
func resume(addr string) error {
	conn, err := dialServer(addr, 5*time.Second)
	if err != nil {
		return err
	}
	c := jsonrpc.NewClient(conn)
	// Go writes the request before it returns: the continue is first on the wire.
	cont := c.Go("RPCServer.Command", api.DebuggerCommand{Name: api.Continue}, new(rpc2.CommandOut), make(chan *rpc.Call, 1))
	go func() {
		<-cont.Done
		c.Close()
	}()
	state := c.Go("RPCServer.State", rpc2.StateIn{NonBlocking: true}, new(rpc2.StateOut), make(chan *rpc.Call, 1))
	select {
	case <-state.Done:
		if state.Error != nil {
			return fmt.Errorf("asking Delve whether the target runs: %w", state.Error)
		}
		return nil
	case <-time.After(5 * time.Second):
		return errDelveSilent
	}
}

// client connects a JSON-RPC client to the running Delve (nil if none).
func (d *delve) client() (*rpc2.RPCClient, error) {
	_, srv := d.proc.running()
	if srv == nil {
		return nil, nil
	}
	conn, err := dialServer(srv.addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return rpc2.NewClientFromConn(conn), nil
}

// release leaves the target running with no breakpoints: halt (Delve
// changes breakpoints only while halted), clear, continue.
func (d *delve) release(logf func(string, ...any)) error {
	_, srv := d.proc.running()
	if srv == nil {
		return nil
	}
	c, err := d.client()
	if err != nil || c == nil {
		return err
	}
	cleared, err := haltAndClear(c)
	c.Disconnect(false)
	if rerr := resume(srv.addr); rerr != nil {
		return errors.Join(err, fmt.Errorf("resuming the target: %w", rerr))
	}
	if err != nil {
		return err
	}
	logf("no client left: cleared %d breakpoints, target resumed", cleared)
	return nil
}

// haltAndClear halts the target if it runs and clears every user
// breakpoint (negative ids are Delve's own: panic, fatal error).
func haltAndClear(c *rpc2.RPCClient) (int, error) {
	state, err := c.GetStateNonBlocking()
	if err != nil {
		return 0, err
	}
	if state.Running {
		if _, err := c.Halt(); err != nil {
			return 0, fmt.Errorf("halt: %w", err)
		}
	}
	bps, err := c.ListBreakpoints(false)
	if err != nil {
		return 0, err
	}
	cleared := 0
	for _, bp := range bps {
		if bp.ID > 0 {
			if _, err := c.ClearBreakpoint(bp.ID); err == nil {
				cleared++
			}
		}
	}
	return cleared, nil
}

// detach halts the target, clears breakpoints and lets Delve detach (which
// resumes the target) and exit. Only a Delve that no longer holds
// breakpoints is ever killed.
func (d *delve) detach(logf func(string, ...any)) error {
	defer d.proc.hold()() // wait for a start under way; no new one after this
	cmd, srv := d.proc.running()
	c, err := d.client()
	if err != nil || c == nil {
		return err
	}
	exited := srv.exited
	cleared, err := haltAndClear(c)
	if err != nil {
		logf("before detaching: %v", err)
	}
	detachErr := c.Detach(false)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		if err == nil && detachErr == nil && cmd != nil { // detached, no breakpoints left
			cmd.Process.Kill()
		}
	}
	logf("dlv detached (cleared %d breakpoints); the target runs on", cleared)
	return nil
}
