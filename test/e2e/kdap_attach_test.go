//go:build e2e

package e2e

import (
	"bufio"
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
	"testing"
	"time"

	"github.com/go-delve/delve/service/api"
	"github.com/go-delve/delve/service/rpc2"
	godap "github.com/google/go-dap"

	"github.com/kdap/kdap/dap"
	"github.com/kdap/kdap/dap/daptest"
	"github.com/kdap/kdap/test/fixtures"
)

// TestKdapAttachWithDelveJSONRPC is GoLand's path: `kdap attach` prints a
// local endpoint and a dlv JSON-RPC client debugs through it.
func TestKdapAttachWithDelveJSONRPC(t *testing.T) {
	ns := newNamespace(t, nil)
	createPod(t, ns, "gohttp", fixtures.GoHTTPImage)
	svc := serviceForward(t, ns, "gohttp")

	// The one session through a debugger image loaded straight into the
	// node: kdap names an image, whatever its path there.
	cmd, addr, _ := startKdapAttach(t, "pod/gohttp", "-n", ns, "--image-go", fixtures.ImportedGoAgentImage)

	conn, client, st, reply := delveStop(t, addr, svc, "goland")
	vars, err := client.ListFunctionArgs(api.EvalScope{GoroutineID: -1}, api.LoadConfig{MaxStringLen: 64})
	if err != nil {
		t.Fatal(err)
	}
	var name string
	for _, v := range vars {
		if v.Name == "name" {
			name = v.Value
		}
	}
	if name != "goland" {
		t.Errorf("argument name = %q, want goland (args %v)", name, vars)
	}
	t.Logf("stopped at %s:%d in %s, name=%q", st.CurrentThread.File, st.CurrentThread.Line, st.CurrentThread.Function.Name(), name)

	// Leave without clearing the breakpoint, then stop kdap attach: the
	// agent releases the target once its last client is gone.
	conn.Close()
	expectReply(t, reply, "hello, goland", 30*time.Second)
	interrupt(t, cmd, "kdap attach")
	expectReply(t, getAsync(fmt.Sprintf("http://%s/hello?name=after", svc)), "hello, after", 10*time.Second)
}

// TestKdapAttachPythonWithADAPClient is the path of a DAP client that
// connects itself (nvim-dap, VS Code's debugpy type): `kdap attach
// --runtime python` prints the adapter's local endpoint and the source root
// to map; the client attaches to debugpy through it.
func TestKdapAttachPythonWithADAPClient(t *testing.T) {
	ns := newNamespace(t, nil)
	svc, root, pricing, line := pyService(t, ns, "pyhttp")

	cmd, addr, text := startKdapAttach(t, "pod/pyhttp", "-n", ns, "--runtime", "python", "--image-python", fixtures.PythonAgentImage)
	if want := fmt.Sprintf(`"remoteRoot": %q`, fixtures.PyHTTPSourceRoot); !strings.Contains(text, want) {
		t.Errorf("kdap attach printed %q, want it to name %s", text, want)
	}
	debugpyStop(t, addr, svc, root, pricing, line, 2)
	interrupt(t, cmd, "kdap attach")
	expectReply(t, getAsync(fmt.Sprintf("http://%s/quote?items=1", svc)), "total: 7", 10*time.Second)
}

// startKdapAttach runs `kdap attach ARGS` against the test cluster until the
// test ends and returns it with the endpoint and the whole line it printed.
func startKdapAttach(t *testing.T, args ...string) (cmd *exec.Cmd, addr, line string) {
	t.Helper()
	return startKdapAttachLogged(t, nil, args...)
}

// interrupt is Ctrl-C to a kdap process: it must exit, without error,
// within 30 s. One that does not is made to print its goroutines (SIGQUIT,
// into the test's log) and is killed.
func interrupt(t *testing.T, cmd *exec.Cmd, what string) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("%s after Ctrl-C: %v", what, err)
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		t.Errorf("%s had not exited 30 s after Ctrl-C (its goroutines are in the log above)", what)
	}
}

// startKdapAttachLogged is startKdapAttach that also keeps what kdap
// prints on stderr in log.
func startKdapAttachLogged(t *testing.T, log *stderrLog, args ...string) (cmd *exec.Cmd, addr, line string) {
	t.Helper()
	cmd = exec.Command(env.kdap, append(append([]string{"attach"}, args...), "--kubeconfig", env.cluster.Kubeconfig())...)
	cmd.Stderr = &testWriter{t: t, prefix: "kdap attach: "}
	if log != nil {
		cmd.Stderr = io.MultiWriter(cmd.Stderr, log)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	printed := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "kdap: debugger listening at: ") {
				printed <- sc.Text()
			}
		}
	}()
	select {
	case line = <-printed:
	case <-time.After(60 * time.Second):
		t.Fatal("kdap attach printed no endpoint within 60s")
	}
	_, rest, _ := strings.Cut(line, "kdap: debugger listening at: ")
	return cmd, strings.Fields(rest)[0], line
}

// delveStop is GoLand's path through kdap attach's endpoint at addr: a
// Delve JSON-RPC client halts the Go fixture, sets a breakpoint in its
// greeting (by the binary's own path: JSON-RPC clients map paths
// themselves), continues, and returns once a request to svc with name
// stops there, with the request's reply to come.
func delveStop(t *testing.T, addr, svc, name string) (net.Conn, *rpc2.RPCClient, *api.DebuggerState, <-chan string) {
	t.Helper()
	start := time.Now()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	// net/rpc calls wait for ever: a deadline turns a debugger that never
	// answers into a failed call (renewed for the caller once stopped).
	conn.SetDeadline(time.Now().Add(time.Minute))
	client := rpc2.NewClientFromConn(conn)
	if _, err := client.Halt(); err != nil { // Delve changes breakpoints only while halted
		t.Fatalf("%s: halt through the endpoint: %v", name, err)
	}
	t.Logf("%s: connected and halted the target in %s", name, time.Since(start).Round(time.Millisecond))
	remote := filepath.Join(env.repo, "test", "fixtures", "gohttp", "main.go")
	line := lineOf(t, remote, "message := fmt.Sprintf")
	if _, err := client.CreateBreakpoint(&api.Breakpoint{File: remote, Line: line}); err != nil {
		t.Fatal(err)
	}
	states := client.Continue()
	reply := getAsync(fmt.Sprintf("http://%s/hello?name=%s", svc, name))
	select {
	case st := <-states:
		if st.Err != nil || st.CurrentThread == nil || st.CurrentThread.Breakpoint == nil || st.CurrentThread.Line != line {
			t.Fatalf("%s: state after continue: %+v (err %v)", name, st.CurrentThread, st.Err)
		}
		conn.SetDeadline(time.Now().Add(time.Minute)) // for the caller's calls while stopped
		return conn, client, st, reply
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: no stop at the breakpoint", name)
	}
	return nil, nil, nil, nil
}

// debugpyStop is a DAP client's path through kdap attach's endpoint at
// addr to debugpy: it maps the Python service's sources (root, as
// kdap attach prints), stops a request to svc for items at pricing:line,
// continues, checks the reply and disconnects.
func debugpyStop(t *testing.T, addr, svc, root, pricing string, line, items int) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := daptest.NewClient(conn)
	c.Timeout = time.Minute
	c.ExpectResponse(t, c.Send("initialize", godap.InitializeRequestArguments{AdapterID: "debugpy", LinesStartAt1: true, ColumnsStartAt1: true, PathFormat: "path"}))
	attachSeq := c.Send("attach", map[string]any{"pathMappings": []map[string]string{{"localRoot": root, "remoteRoot": fixtures.PyHTTPSourceRoot}}})
	c.ExpectEvent(t, "initialized")
	bpSeq := c.Send("setBreakpoints", godap.SetBreakpointsArguments{Source: godap.Source{Path: pricing}, Breakpoints: []godap.SourceBreakpoint{{Line: line}}})
	c.ExpectResponses(t, attachSeq, bpSeq, c.Send("configurationDone", nil))
	reply := getAsync(fmt.Sprintf("http://%s/quote?items=%d", svc, items))
	thread, _ := expectStop(t, c, pricing, line)
	c.ExpectResponse(t, c.Send("continue", godap.ContinueArguments{ThreadId: thread}))
	expectReply(t, reply, fmt.Sprintf("total: %d", 7*items), 10*time.Second)
	c.ExpectResponse(t, c.Send("disconnect", godap.DisconnectArguments{}))
}

// stderrLog keeps what a kdap process prints on stderr.
type stderrLog struct {
	mu   sync.Mutex
	text strings.Builder
}

func (l *stderrLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.text.Write(p)
}

// wait waits (within d) until the log holds a line that contains every
// one of parts, and returns that line.
func (l *stderrLog) wait(t *testing.T, d time.Duration, parts ...string) string {
	t.Helper()
	for deadline := time.Now().Add(d); ; time.Sleep(50 * time.Millisecond) {
		l.mu.Lock()
		text := l.text.String()
		l.mu.Unlock()
		for _, line := range strings.Split(text, "\n") {
			found := true
			for _, p := range parts {
				found = found && strings.Contains(line, p)
			}
			if found {
				return line
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("kdap printed no line with %q within %s", parts, d)
		}
	}
}

// TestKdapAttachHealsALostForward: while a JSON-RPC client (GoLand's
// path) is stopped at a breakpoint, kdap attach's port-forward is cut (its
// connections to the API server aborted; the API server untouched). That
// session ends with kdap saying so and what the pod's status shows, the
// target runs on, kdap attach stays, and the same endpoint serves the
// next client at once through the same debugger container.
func TestKdapAttachHealsALostForward(t *testing.T) {
	ns := newNamespace(t, nil)
	createPod(t, ns, "gohttp", fixtures.GoHTTPImage)
	svc := serviceForward(t, ns, "gohttp")
	log := &stderrLog{}
	cmd, addr, _ := startKdapAttachLogged(t, log, "pod/gohttp", "-n", ns, "--image-go", fixtures.GoAgentImage)
	conn, _, _, reply := delveStop(t, addr, svc, "cut")
	start := time.Now()
	cutAPIConnections(t, cmd.Process.Pid)
	expectReply(t, reply, "hello, cut", 10*time.Second)
	t.Logf("the target was released %s after the cut", time.Since(start).Round(time.Millisecond))
	said := log.wait(t, 10*time.Second, "lost the port-forward to pod "+ns+"/gohttp", "the session from", "has ended",
		"container app is running", "is running (it resumes the target once its last client is gone)", "connect again")
	t.Logf("kdap said: %s", said)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("the cut session's connection is still open (read: %v)", err)
	}
	conn.Close()

	conn, _, _, reply = delveStop(t, addr, svc, "healed")
	log.wait(t, time.Second, "forwarding to debugger container", "in pod "+ns+"/gohttp again")
	conn.Close()
	expectReply(t, reply, "hello, healed", 30*time.Second)
	if n := ephemeralCount(t, ns, "gohttp"); n != 1 {
		t.Errorf("%d debugger containers, want the first one only", n)
	}
	interrupt(t, cmd, "kdap attach")
	log.wait(t, time.Second, "kdap: stopping; container app is running")
}

// TestDAPSessionAfterALostForward: kdap dap --listen's port-forward for a
// session stopped at a breakpoint is cut: the IDE is told the session has
// ended and what the pod's status shows, the target runs on, and the next
// session on the same kdap attaches at once through the same debugger
// container.
func TestDAPSessionAfterALostForward(t *testing.T) {
	ns := newNamespace(t, nil)
	createPod(t, ns, "gohttp", fixtures.GoHTTPImage)
	svc := serviceForward(t, ns, "gohttp")
	root, mainGo := localCopy(t)
	line := lineOf(t, mainGo, "message := fmt.Sprintf")
	k := startKdap(t)

	c := attachSession(t, k, ns, "pod/gohttp", root, mainGo, line)
	reply := getAsync(fmt.Sprintf("http://%s/hello?name=cut", svc))
	expectStop(t, c, mainGo, line)
	start := time.Now()
	cutAPIConnections(t, k.cmd.Process.Pid)
	out := c.Expect(t, "the loss explained", func(m *dap.Message) bool {
		return m.Type == "event" && m.Event == "output" && strings.Contains(string(m.Raw), "lost the connection to the debugger")
	})
	for _, want := range []string{"this session has ended", "container app is running", "is running (it resumes the target once its last client is gone)", "start a new session"} {
		if !strings.Contains(string(out.Raw), want) {
			t.Errorf("kdap said %s, want it to say %q", out.Raw, want)
		}
	}
	c.ExpectEvent(t, "terminated")
	expectReply(t, reply, "hello, cut", 10*time.Second)
	t.Logf("the target was released %s after the cut", time.Since(start).Round(time.Millisecond))
	c.Close()

	start = time.Now()
	c = attachSession(t, k, ns, "pod/gohttp", root, mainGo, line)
	t.Logf("the next session was attached and configured %s after it asked", time.Since(start).Round(time.Millisecond))
	reply = getAsync(fmt.Sprintf("http://%s/hello?name=again", svc))
	expectStop(t, c, mainGo, line)
	c.ExpectResponse(t, c.Send("disconnect", godap.DisconnectArguments{}))
	expectReply(t, reply, "hello, again", 10*time.Second)
	if n := ephemeralCount(t, ns, "gohttp"); n != 1 {
		t.Errorf("%d debugger containers, want the first one only", n)
	}
}
