package agent

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	godap "github.com/google/go-dap"

	"github.com/kdap/kdap/dap"
	"github.com/kdap/kdap/dap/daptest"
	nodeimage "github.com/kdap/kdap/images/node"
	"github.com/kdap/kdap/runtimes"
)

// nodeDist fetches the Node.js and js-debug the Node image carries (npm
// registry, cached).
func nodeDist(t *testing.T) nodeimage.Dist {
	t.Helper()
	if testing.Short() {
		t.Skip("fetches Node.js and js-debug")
	}
	d, err := nodeimage.FetchDist(context.Background(), &testLog{t})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

type testLog struct{ t *testing.T }

func (l *testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// startNodeTarget runs test/fixtures/nodehttp with node, its inspector
// (opened later by SIGUSR1) on a free port so that tests do not meet on
// 9229, and returns its HTTP address, pid and inspector port.
func startNodeTarget(t *testing.T, node string, extra ...string) (httpAddr string, pid, inspectPort int) {
	t.Helper()
	httpAddr = freeAddr(t)
	_, port, _ := net.SplitHostPort(httpAddr)
	_, ip, _ := net.SplitHostPort(freeAddr(t))
	fmt.Sscan(ip, &inspectPort)
	args := append([]string{fmt.Sprintf("--inspect-port=127.0.0.1:%d", inspectPort)}, extra...)
	args = append(args, "server.js")
	cmd := exec.Command(node, args...)
	cmd.Dir, _ = filepath.Abs("../test/fixtures/nodehttp")
	cmd.Env = append(os.Environ(), "PORT="+port)
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = &testLog{t}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	sc := bufio.NewScanner(out)
	if !sc.Scan() || !strings.Contains(sc.Text(), "listening") {
		t.Fatalf("node fixture did not start: %q", sc.Text())
	}
	go func() {
		for sc.Scan() {
		}
	}()
	return httpAddr, cmd.Process.Pid, inspectPort
}

// TestNodeSessionThroughTheAgent: a plain DAP client (it never answers
// startDebugging) gets one working session on js-debug through the
// agent: breakpoint by the client's own path, stop, locals, evaluate,
// continue; on disconnect the target runs on and the inspector is closed.
// Then a second session stops again and drops its connection while
// paused: the target resumes.
func TestNodeSessionThroughTheAgent(t *testing.T) {
	dist := nodeDist(t)
	node := filepath.Join(dist.Node, "bin", "node")
	httpAddr, pid, inspectPort := startNodeTarget(t, node)
	var log syncLog
	ctx, cancel := context.WithCancel(context.Background())
	agentAddr, done := startAgent(t, ctx, Config{TTL: time.Hour, PID: pid, Log: &log, Runtime: runtimes.Node.Name,
		Getenv: settings(runtimes.NodeBinEnv, node, runtimes.JSDebugEnv, filepath.Join(dist.JSDebug, "vsDebugServer.js"))})
	defer func() {
		cancel()
		if done != nil {
			if err := <-done; err != nil {
				t.Errorf("agent: %v", err)
			}
		}
		if t.Failed() {
			t.Logf("agent log:\n%s", log.String())
		}
	}()

	// The IDE's copy of the sources lives elsewhere than the target's.
	fixture, _ := filepath.Abs("../test/fixtures/nodehttp")
	local := filepath.Join(t.TempDir(), "ws")
	copyDir(t, fixture, local)
	pricing := filepath.Join(local, "lib", "pricing.js")
	line := lineOf(t, pricing, "const total = items * unit")

	c, conn := nodeSession(t, agentAddr, local, fixture, pricing, line)
	reply := make(chan string, 1)
	go func() { reply <- get("http://" + httpAddr + "/quote?items=3") }()
	thread, frame := expectNodeStop(t, c, pricing, line)
	vars := frameLocals(t, c, frame)
	if vars["items"] != "3" || vars["unit"] != "7" {
		t.Errorf("locals items=%q unit=%q, want 3 and 7 (all %v)", vars["items"], vars["unit"], vars)
	}
	// js-debug numbers frames from 0, which go-dap's EvaluateArguments omits.
	ev := c.ExpectResponse(t, c.Send("evaluate", map[string]any{"expression": "items * unit + 1", "frameId": frame, "context": "repl"}))
	var evb godap.EvaluateResponseBody
	daptest.Decode(t, ev, &evb)
	if evb.Result != "22" {
		t.Errorf("evaluate = %q, want 22", evb.Result)
	}
	c.ExpectResponse(t, c.Send("continue", godap.ContinueArguments{ThreadId: thread}))
	if r := <-reply; !strings.Contains(r, "total: 21") {
		t.Errorf("reply %q", r)
	}
	c.ExpectResponse(t, c.Send("disconnect", godap.DisconnectArguments{}))
	conn.Close()
	if r := get("http://" + httpAddr + "/quote?items=2"); !strings.Contains(r, "total: 14") {
		t.Errorf("after disconnect: %q", r)
	}
	waitInspectorClosed(t, inspectPort)

	// Second session: SIGUSR1 again; the client drops while paused.
	c, conn = nodeSession(t, agentAddr, local, fixture, pricing, line)
	go func() { reply <- get("http://" + httpAddr + "/quote?items=5") }()
	expectNodeStop(t, c, pricing, line)
	dropped := time.Now()
	conn.Close()
	select {
	case r := <-reply:
		t.Logf("paused request answered %s after the client dropped", time.Since(dropped).Round(time.Millisecond))
		if !strings.Contains(r, "total: 35") {
			t.Errorf("reply %q", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the target stayed paused after the client dropped")
	}
	waitInspectorClosed(t, inspectPort)
	if r := get("http://" + httpAddr + "/quote?items=1"); !strings.Contains(r, "total: 7") {
		t.Errorf("later request: %q (the breakpoint was left armed?)", r)
	}

	// Third session: the agent is told to stop (its TTL, SIGTERM) while
	// the target is paused: it lets go and exits.
	c, _ = nodeSession(t, agentAddr, local, fixture, pricing, line)
	go func() { reply <- get("http://" + httpAddr + "/quote?items=4") }()
	expectNodeStop(t, c, pricing, line)
	stopped := time.Now()
	cancel()
	select {
	case r := <-reply:
		t.Logf("paused request answered %s after the agent was stopped", time.Since(stopped).Round(time.Millisecond))
		if !strings.Contains(r, "total: 28") {
			t.Errorf("reply %q", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the target stayed paused after the agent was stopped")
	}
	if err := <-done; err != nil {
		t.Errorf("agent: %v", err)
	}
	done = nil
	waitInspectorClosed(t, inspectPort)
}

// TestNodeRefusesATargetWithoutSIGUSR1: a Node.js started with
// --disable-sigusr1 would be killed by the signal; the agent says why it
// cannot debug it and sends nothing.
func TestNodeRefusesATargetWithoutSIGUSR1(t *testing.T) {
	dist := nodeDist(t)
	node := filepath.Join(dist.Node, "bin", "node")
	httpAddr, pid, _ := startNodeTarget(t, node, "--disable-sigusr1")
	_, _, err := inspect(pid, runtimes.Node.Name)
	if err == nil || !strings.Contains(err.Error(), "does not handle SIGUSR1") || !strings.Contains(err.Error(), "--disable-sigusr1") {
		t.Errorf("inspect = %v; want the SIGUSR1 refusal", err)
	}
	if r := get("http://" + httpAddr + "/quote?items=1"); !strings.Contains(r, "total: 7") {
		t.Errorf("target after the refusal: %q", r)
	}
}

// nodeSession connects a plain DAP client through the agent and attaches
// as kdap does: localRoot is the client's folder, remoteRoot the target's.
func nodeSession(t *testing.T, agentAddr, localRoot, remoteRoot, file string, line int) (*daptest.Client, net.Conn) {
	t.Helper()
	conn, err := net.Dial("tcp", agentAddr)
	if err != nil {
		t.Fatal(err)
	}
	c := daptest.NewClient(conn)
	c.Timeout = 20 * time.Second
	c.ExpectResponse(t, c.Send("initialize", godap.InitializeRequestArguments{ClientID: "test", AdapterID: "kdap", LinesStartAt1: true, ColumnsStartAt1: true, PathFormat: "path"}))
	attach := c.Send("attach", map[string]any{"localRoot": localRoot, "remoteRoot": remoteRoot})
	c.ExpectEvent(t, "initialized")
	bp := c.Send("setBreakpoints", godap.SetBreakpointsArguments{Source: godap.Source{Path: file}, Breakpoints: []godap.SourceBreakpoint{{Line: line}}})
	got := c.ExpectResponses(t, bp, c.Send("configurationDone", nil), attach)
	var body godap.SetBreakpointsResponseBody
	daptest.Decode(t, got[bp], &body)
	if len(body.Breakpoints) != 1 || !body.Breakpoints[0].Verified {
		t.Errorf("breakpoint at %s:%d not verified: %s", file, line, got[bp].Raw)
	}
	return c, conn
}

// expectNodeStop waits for the breakpoint stop and checks that the top
// frame is the client's own file and line.
func expectNodeStop(t *testing.T, c *daptest.Client, file string, line int) (thread, frame int) {
	t.Helper()
	stopped := c.Expect(t, "stopped at the breakpoint", func(m *dap.Message) bool {
		return m.Type == "event" && m.Event == "stopped" && strings.Contains(string(m.Raw), `"reason":"breakpoint"`)
	})
	var sb godap.StoppedEventBody
	daptest.Decode(t, stopped, &sb)
	st := c.ExpectResponse(t, c.Send("stackTrace", godap.StackTraceArguments{ThreadId: sb.ThreadId, Levels: 20}))
	var stack godap.StackTraceResponseBody
	daptest.Decode(t, st, &stack)
	if len(stack.StackFrames) == 0 || stack.StackFrames[0].Source == nil || stack.StackFrames[0].Source.Path != file || stack.StackFrames[0].Line != line {
		t.Fatalf("top frame is not %s:%d: %s", file, line, st.Raw)
	}
	return sb.ThreadId, stack.StackFrames[0].Id
}

// frameLocals returns the frame's local variables by name.
func frameLocals(t *testing.T, c *daptest.Client, frame int) map[string]string {
	t.Helper()
	sc := c.ExpectResponse(t, c.Send("scopes", godap.ScopesArguments{FrameId: frame}))
	var scopes godap.ScopesResponseBody
	daptest.Decode(t, sc, &scopes)
	if len(scopes.Scopes) == 0 {
		t.Fatalf("no scopes: %s", sc.Raw)
	}
	vr := c.ExpectResponse(t, c.Send("variables", godap.VariablesArguments{VariablesReference: scopes.Scopes[0].VariablesReference}))
	var vars godap.VariablesResponseBody
	daptest.Decode(t, vr, &vars)
	out := map[string]string{}
	for _, v := range vars.Variables {
		out[v.Name] = v.Value
	}
	return out
}

// waitInspectorClosed waits until nothing listens on the inspector port.
func waitInspectorClosed(t *testing.T, port int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err != nil {
			return
		}
		c.Close()
	}
	t.Fatalf("the inspector still listens on port %d after the session", port)
}

func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if info.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}
