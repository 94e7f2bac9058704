//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	godap "github.com/google/go-dap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kdap/kdap/dap"
	"github.com/kdap/kdap/dap/daptest"
	"github.com/kdap/kdap/forward"
	"github.com/kdap/kdap/test/fixtures"
)

// kdapProcess is a running `kdap dap --listen` under test.
type kdapProcess struct {
	cmd  *exec.Cmd
	addr string
}

// startKdap runs the kdap binary as `kdap dap --listen 127.0.0.1:0` against
// the test cluster and waits for its ready line.
func startKdap(t testing.TB, extra ...string) *kdapProcess {
	t.Helper()
	args := []string{"dap", "--listen", "127.0.0.1:0", "--kubeconfig", env.cluster.Kubeconfig(), "--agent-ttl", "10m",
		"--image-repository", env.images} // kdap's default images, in the suite's registry
	args = append(args, extra...)
	cmd := exec.Command(env.kdap, args...)
	cmd.Env = append(os.Environ(), "XDG_STATE_HOME="+env.state) // its local log, the suite's
	cmd.Stderr = &testWriter{t: t, prefix: "kdap stderr: "}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			t.Error("kdap did not exit within 10s of SIGINT")
		}
	})
	lines := bufio.NewScanner(out)
	ready := make(chan string, 1)
	go func() {
		for lines.Scan() {
			if _, addr, ok := strings.Cut(lines.Text(), "kdap: DAP server listening at: "); ok {
				ready <- addr
			}
		}
	}()
	select {
	case addr := <-ready:
		return &kdapProcess{cmd: cmd, addr: addr}
	case <-time.After(30 * time.Second):
		t.Fatal("kdap printed no ready line within 30s")
		return nil
	}
}

// connect opens a DAP client on kdap.
func (k *kdapProcess) connect(t testing.TB) *daptest.Client {
	t.Helper()
	network, addr := "tcp", k.addr
	if path, ok := strings.CutPrefix(k.addr, "unix:"); ok {
		network, addr = "unix", path
	}
	conn, err := net.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	c := daptest.NewClient(conn)
	c.Timeout = 60 * time.Second
	t.Cleanup(func() { c.Close() })
	return c
}

type testWriter struct {
	t      testing.TB
	prefix string
}

func (w *testWriter) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		w.t.Log(w.prefix + line)
	}
	return len(p), nil
}

// localCopy puts the fixture's source under a fresh directory, as an IDE
// workspace whose path differs from where the binary was built.
func localCopy(t testing.TB) (root, mainGo string) {
	t.Helper()
	root = filepath.Join(t.TempDir(), "workspace")
	mainGo = filepath.Join(root, "test", "fixtures", "gohttp", "main.go")
	src, err := os.ReadFile(filepath.Join(env.repo, "test", "fixtures", "gohttp", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Dir(mainGo), 0o755)
	if err := os.WriteFile(mainGo, src, 0o644); err != nil {
		t.Fatal(err)
	}
	return root, mainGo
}

func lineOf(t testing.TB, file, text string) int {
	t.Helper()
	n, err := fixtures.LineOf(file, text)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// attachSession runs initialize → attach → setBreakpoints → configurationDone
// and returns the client.
func attachSession(t *testing.T, k *kdapProcess, ns, target, localRoot, file string, line int) *daptest.Client {
	t.Helper()
	return attachSessionWith(t, k, map[string]any{"target": target, "namespace": ns, "localRoot": localRoot}, file, line)
}

// attachSessionWith is attachSession with the attach arguments given whole.
func attachSessionWith(t *testing.T, k *kdapProcess, args map[string]any, file string, line int) *daptest.Client {
	t.Helper()
	return attachSessionInit(t, k, godap.InitializeRequestArguments{
		ClientID: "e2e", AdapterID: "kdap", LinesStartAt1: true, ColumnsStartAt1: true, PathFormat: "path", SupportsProgressReporting: true}, args, file, line)
}

// attachSessionInit is attachSessionWith with the client's initialize
// arguments (what the client says it supports) given.
func attachSessionInit(t *testing.T, k *kdapProcess, init godap.InitializeRequestArguments, args map[string]any, file string, line int) *daptest.Client {
	t.Helper()
	c := k.connect(t)
	c.ExpectResponse(t, c.Send("initialize", init))
	start := time.Now()
	attach := c.Send("attach", args)
	first := c.Expect(t, "initialized event", func(m *dap.Message) bool {
		return m.Type == "event" && m.Event == "initialized" || m.Type == "response" && m.RequestSeq == attach && !m.Success
	})
	if first.Type == "response" {
		t.Fatalf("attach failed: %s", first.ErrorText())
	}
	// As an IDE does: configure after "initialized", without waiting for the
	// attach response (debugpy sends it only after configurationDone).
	bpSeq := c.Send("setBreakpoints", godap.SetBreakpointsArguments{
		Source: godap.Source{Path: file}, Breakpoints: []godap.SourceBreakpoint{{Line: line}}})
	cdSeq := c.Send("configurationDone", nil)
	got := c.ExpectResponses(t, attach, bpSeq, cdSeq)
	t.Logf("attach → attached and configured: %s", time.Since(start).Round(time.Millisecond))
	var body godap.SetBreakpointsResponseBody
	daptest.Decode(t, got[bpSeq], &body)
	if len(body.Breakpoints) != 1 {
		t.Fatalf("setBreakpoints at %s:%d: %s", file, line, got[bpSeq].Raw)
	}
	if bp := body.Breakpoints[0]; !bp.Verified {
		// js-debug answers before it has matched the loaded scripts, then
		// verifies the breakpoint with a "breakpoint" event, as DAP allows.
		c.Expect(t, fmt.Sprintf("breakpoint %d verified (setBreakpoints answered %s)", bp.Id, got[bpSeq].Raw), func(m *dap.Message) bool {
			var ev godap.BreakpointEvent
			return m.Type == "event" && m.Event == "breakpoint" && json.Unmarshal(m.Raw, &ev) == nil &&
				ev.Body.Breakpoint.Id == bp.Id && ev.Body.Breakpoint.Verified
		})
	}
	t.Logf("attach → breakpoint verified: %s", time.Since(start).Round(time.Millisecond))
	return c
}

// expectStop waits for a breakpoint stop and checks the top frame.
func expectStop(t testing.TB, c *daptest.Client, file string, line int) (threadID, frameID int) {
	t.Helper()
	stopped := c.Expect(t, "stopped at the breakpoint", func(m *dap.Message) bool {
		var ev struct {
			Body godap.StoppedEventBody `json:"body"`
		}
		return m.Type == "event" && m.Event == "stopped" && json.Unmarshal(m.Raw, &ev) == nil && ev.Body.Reason == "breakpoint"
	})
	var sb godap.StoppedEventBody
	daptest.Decode(t, stopped, &sb)
	st := c.ExpectResponse(t, c.Send("stackTrace", godap.StackTraceArguments{ThreadId: sb.ThreadId, Levels: 20}))
	var stack godap.StackTraceResponseBody
	daptest.Decode(t, st, &stack)
	if len(stack.StackFrames) == 0 {
		t.Fatalf("empty stack: %s", st.Raw)
	}
	top := stack.StackFrames[0]
	if top.Source == nil || top.Source.Path != file || top.Line != line {
		t.Errorf("top frame %s at %v:%d; want the local path %s:%d", top.Name, top.Source, top.Line, file, line)
	}
	t.Logf("stopped in %s at %s:%d", top.Name, top.Source.Path, top.Line)
	return sb.ThreadId, top.Id
}

// locals returns the frame's local variables by name.
func locals(t *testing.T, c *daptest.Client, frameID int) map[string]string {
	t.Helper()
	sc := c.ExpectResponse(t, c.Send("scopes", godap.ScopesArguments{FrameId: frameID}))
	var scopes godap.ScopesResponseBody
	daptest.Decode(t, sc, &scopes)
	out := map[string]string{}
	for _, s := range scopes.Scopes {
		if !strings.HasPrefix(s.Name, "Local") && !strings.HasPrefix(s.Name, "Arguments") { // Delve, debugpy: Locals; js-debug: "Local: FUNCTION"
			continue
		}
		vr := c.ExpectResponse(t, c.Send("variables", godap.VariablesArguments{VariablesReference: s.VariablesReference}))
		var vars godap.VariablesResponseBody
		daptest.Decode(t, vr, &vars)
		for _, v := range vars.Variables {
			out[v.Name] = v.Value
		}
	}
	return out
}

// serviceForward forwards to the fixture's HTTP port (the Go and Python
// services': 8080).
func serviceForward(t testing.TB, ns, pod string) string {
	t.Helper()
	return podForward(t, ns, pod, fixtures.GoHTTPPort)
}

// podForward forwards to a port of the pod and returns the local address.
func podForward(t testing.TB, ns, pod string, port int) string {
	t.Helper()
	d, err := forward.NewDialer(env.rest, forward.URL(env.clientset, ns, pod))
	if err != nil {
		t.Fatal(err)
	}
	return forwardPort(t, d, port).Addr()
}

// getAsync fetches a URL in the background.
func getAsync(u string) <-chan string { return fetchAsync(httpClient(), u) }

// fetchAsync fetches a URL in the background with client, and sends the
// start of the reply's body (or the error).
func fetchAsync(client *http.Client, u string) <-chan string {
	ch := make(chan string, 1)
	go func() {
		resp, err := client.Get(u)
		if err != nil {
			ch <- "error: " + err.Error()
			return
		}
		defer resp.Body.Close()
		b := make([]byte, 4096)
		n, _ := resp.Body.Read(b)
		ch <- strings.TrimSpace(string(b[:n]))
	}()
	return ch
}

func expectReply(t testing.TB, ch <-chan string, want string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	select {
	case got := <-ch:
		if !strings.Contains(got, want) {
			t.Errorf("reply %q, want it to contain %q", got, want)
		}
		return time.Since(start)
	case <-time.After(within):
		t.Fatalf("no reply within %s: the target is still stopped", within)
		return 0
	}
}

func ephemeralCount(t *testing.T, ns, pod string) int {
	t.Helper()
	p, err := env.clientset.CoreV1().Pods(ns).Get(context.Background(), pod, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return len(p.Spec.EphemeralContainers)
}

func TestGoDebugThroughKdapDap(t *testing.T) {
	ns := newNamespace(t, nil)
	createPod(t, ns, "gohttp", fixtures.GoHTTPImage)
	svc := serviceForward(t, ns, "gohttp")
	root, mainGo := localCopy(t)
	line := lineOf(t, mainGo, "message := fmt.Sprintf")
	k := startKdap(t)

	c := attachSession(t, k, ns, "pod/gohttp", root, mainGo, line)
	reply := getAsync(fmt.Sprintf("http://%s/hello?name=kdap", svc))
	_, frame := expectStop(t, c, mainGo, line)
	vars := locals(t, c, frame)
	if vars["name"] != `"kdap"` {
		t.Errorf("local name = %q, want \"kdap\" (all: %v)", vars["name"], vars)
	}
	c.ExpectResponse(t, c.Send("continue", godap.ContinueArguments{ThreadId: 0}))
	expectReply(t, reply, "hello, kdap", 10*time.Second)

	// Disconnect without clearing the breakpoint: the target must not stop again.
	c.ExpectResponse(t, c.Send("disconnect", godap.DisconnectArguments{}))
	for i := 0; i < 3; i++ {
		took := expectReply(t, getAsync(fmt.Sprintf("http://%s/hello?name=after", svc)), "hello, after", 10*time.Second)
		t.Logf("request %d after disconnect answered in %s", i+1, took.Round(time.Millisecond))
	}

	// A second session reuses the agent.
	c2 := attachSession(t, k, ns, "pod/gohttp", root, mainGo, line)
	if n := ephemeralCount(t, ns, "gohttp"); n != 1 {
		t.Errorf("%d ephemeral containers after the second attach, want 1 (reuse)", n)
	}
	reply = getAsync(fmt.Sprintf("http://%s/hello?name=second", svc))
	expectStop(t, c2, mainGo, line)

	// kdap is SIGKILLed while the target is stopped: the agent releases it.
	killed := time.Now()
	k.cmd.Process.Kill()
	took := expectReply(t, reply, "hello, second", 30*time.Second)
	t.Logf("stopped request answered %s after kdap was SIGKILLed (%s after the kill)", took.Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))
	expectReply(t, getAsync(fmt.Sprintf("http://%s/hello?name=later", svc)), "hello, later", 10*time.Second)
}
