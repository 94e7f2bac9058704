package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// server is a debugger process that serves on an address it prints: a
// Unix socket in a directory of its own, or a loopback host:port.
type server struct {
	addr   string
	exited chan struct{} // closed when the process has exited
	output *tailBuffer   // the end of what it printed, for errors
}

// errExitedEarly: the process ended before it said where it serves.
var errExitedEarly = errors.New("exited before serving")

// startServer starts cmd and waits (at most timeout) for a line of its
// stdout that holds marker followed by the address it serves on. What it
// prints goes to log, stdout lines prefixed by name. onExit runs once it
// exits, whenever that is. A process that has not started serving by the
// timeout, or when ctx ends, gets SIGTERM.
func startServer(ctx context.Context, cmd *exec.Cmd, name, marker string, log io.Writer, timeout time.Duration, onExit func(error)) (*server, error) {
	s := &server{exited: make(chan struct{}), output: &tailBuffer{}}
	cmd.Stderr = io.MultiWriter(log, s.output)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintf(log, "%s: %s\n", name, line)
			fmt.Fprintln(s.output, line)
			if _, addr, ok := strings.Cut(line, marker); ok {
				select {
				case found <- strings.TrimSpace(addr):
				default:
				}
			}
		}
	}()
	go func() {
		err := cmd.Wait()
		onExit(err)
		close(s.exited)
	}()
	select {
	case s.addr = <-found:
		return s, nil
	case <-s.exited:
		return s, errExitedEarly
	case <-time.After(timeout):
		cmd.Process.Signal(syscall.SIGTERM)
		return s, fmt.Errorf("%s did not start serving within %s", name, timeout)
	case <-ctx.Done():
		cmd.Process.Signal(syscall.SIGTERM)
		return s, ctx.Err()
	}
}

// dialServer connects to a server's address (a Unix socket's path, or
// host:port).
func dialServer(addr string, timeout time.Duration) (net.Conn, error) {
	if filepath.IsAbs(addr) {
		return net.DialTimeout("unix", addr, timeout)
	}
	return net.DialTimeout("tcp", addr, timeout)
}

// tailBuffer keeps the last 2 KiB written to it, safe for concurrent use.
type tailBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > 2048 {
		t.b = t.b[len(t.b)-2048:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.b))
}

// serverProcess keeps one debugger process serving (Delve, js-debug, the
// Java debug server): ensure starts it unless it runs, one start at a
// time, and it is forgotten when it exits, so the next ensure starts it
// again. Each start is given a Unix socket path in a new directory that
// only the agent's user may enter (removed when the process exits): there
// the debugger serves where only the agent reaches it, unlike a loopback
// port, which every container of the pod shares.
type serverProcess struct {
	name, marker string // for startServer
	timeout      time.Duration
	log          io.Writer

	startMu sync.Mutex // serialises starts; held while one is under way
	mu      sync.Mutex // guards the fields below; never held for long
	cmd     *exec.Cmd
	srv     *server
}

// ensure returns the running process's server, or starts one made by
// newCmd (given the socket to serve on) and returns it once ready (if set)
// has run on it; started says it was started now. A process that exits
// while starting gives exitedEarly(what it printed) as the error.
func (p *serverProcess) ensure(ctx context.Context, logf func(string, ...any), newCmd func(socket string) *exec.Cmd,
	exitedEarly func(output string) error, ready func(*server) error) (srv *server, started bool, err error) {
	p.startMu.Lock()
	defer p.startMu.Unlock()
	if _, srv := p.running(); srv != nil {
		return srv, false, nil
	}
	dir, err := os.MkdirTemp("", "kdap-"+p.name+"-") // mode 0700
	if err != nil {
		return nil, false, fmt.Errorf("the debugger container needs a writable temporary directory for %s's socket: %w", p.name, err)
	}
	cmd := newCmd(filepath.Join(dir, "debugger.sock"))
	srv, err = startServer(ctx, cmd, p.name, p.marker, p.log, p.timeout, func(err error) {
		os.RemoveAll(dir)
		logf("%s exited: %v", p.name, err)
		p.mu.Lock()
		if p.cmd == cmd {
			p.cmd, p.srv = nil, nil
		}
		p.mu.Unlock()
	})
	if srv == nil { // it never started, so its exit will not remove dir
		os.RemoveAll(dir)
	}
	if errors.Is(err, errExitedEarly) {
		return nil, false, exitedEarly(srv.output.String())
	}
	if err != nil {
		return nil, false, err
	}
	p.mu.Lock()
	p.cmd, p.srv = cmd, srv
	p.mu.Unlock()
	if ready != nil {
		if err := ready(srv); err != nil {
			return nil, false, err
		}
	}
	return srv, true, nil
}

// running returns the process and its server while it runs (nils if not).
func (p *serverProcess) running() (*exec.Cmd, *server) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd, p.srv
}

// state is "running" or "not started", for the status document.
func (p *serverProcess) state() string {
	if cmd, _ := p.running(); cmd != nil {
		return "running"
	}
	return "not started"
}

// hold waits for a start under way and keeps new ones off until the
// returned func is called (a driver detaching).
func (p *serverProcess) hold() (release func()) {
	p.startMu.Lock()
	return p.startMu.Unlock
}
