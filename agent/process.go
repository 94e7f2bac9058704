package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// server is a debugger process that serves on an address it prints.
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
