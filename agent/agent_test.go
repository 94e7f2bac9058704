package agent

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	godap "github.com/google/go-dap"

	"github.com/kdap/kdap/agentapi"
	"github.com/kdap/kdap/dap"
	"github.com/kdap/kdap/dap/daptest"
	"github.com/kdap/kdap/test/fixtures"
)

// TestAgentReleasesTheTargetWhenTheClientDrops uses real components: the
// gohttp fixture as the target, the agent, Delve, and a DAP client that
// stops at a breakpoint and then drops its connection without a disconnect
// (what happens when kdap is killed).
func TestAgentReleasesTheTargetWhenTheClientDrops(t *testing.T) {
	if testing.Short() {
		t.Skip("builds dlv and a target")
	}
	httpAddr, pid, dlv := startTarget(t)
	var log syncLog
	ctx, cancel := context.WithCancel(context.Background())
	agentAddr, done := startAgent(t, ctx, Config{TTL: time.Hour, Getenv: settings(DlvEnv, dlv), PID: pid, Log: &log})
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
		t.Logf("agent log:\n%s", log.String())
	}()

	// The status document says what the agent found.
	resp, err := http.Get("http://" + agentAddr + "/")
	if err != nil {
		t.Fatal(err)
	}
	var st agentapi.Status
	json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if st.Target == nil || st.Target.Runtime != "go" || st.Target.PID != pid || st.Target.Module != "github.com/kdap/kdap" {
		t.Fatalf("status = %+v", st)
	}

	conn, err := net.Dial("tcp", agentAddr)
	if err != nil {
		t.Fatal(err)
	}
	c := daptest.NewClient(conn)
	c.Timeout = realDebuggerTimeout
	defer conn.Close()
	c.ExpectResponse(t, c.Send("initialize", godap.InitializeRequestArguments{AdapterID: "go", LinesStartAt1: true, ColumnsStartAt1: true, PathFormat: "path"}))
	attach := c.Send("attach", map[string]any{"mode": "remote"})
	c.ExpectEvent(t, "initialized")
	c.ExpectResponse(t, attach)
	src, _ := filepath.Abs("../test/fixtures/gohttp/main.go")
	line := lineOf(t, src, "message := fmt.Sprintf")
	bp := c.ExpectResponse(t, c.Send("setBreakpoints", godap.SetBreakpointsArguments{
		Source: godap.Source{Path: src}, Breakpoints: []godap.SourceBreakpoint{{Line: line}}}))
	var bpBody godap.SetBreakpointsResponseBody
	daptest.Decode(t, bp, &bpBody)
	if len(bpBody.Breakpoints) != 1 || !bpBody.Breakpoints[0].Verified {
		t.Fatalf("breakpoint not verified: %s", bp.Raw)
	}
	c.ExpectResponse(t, c.Send("configurationDone", nil))

	replies := make(chan string, 4)
	go func() { replies <- get("http://" + httpAddr + "/hello?name=first") }()
	c.Expect(t, "stopped at the breakpoint", func(m *dap.Message) bool {
		return m.Type == "event" && m.Event == "stopped" && strings.Contains(string(m.Raw), `"reason":"breakpoint"`)
	})
	select {
	case r := <-replies:
		t.Fatalf("request answered while stopped at the breakpoint: %q", r)
	case <-time.After(300 * time.Millisecond):
	}

	// Drop the connection, breakpoint still set and target stopped.
	dropped := time.Now()
	conn.Close()
	select {
	case r := <-replies:
		t.Logf("stopped request answered %s after the client dropped: %q", time.Since(dropped).Round(time.Millisecond), r)
		if !strings.Contains(r, "hello, first") {
			t.Errorf("reply %q", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the target stayed stopped after the client dropped")
	}
	// The breakpoint is gone: the next requests do not stop.
	for i := 0; i < 3; i++ {
		go func() { replies <- get("http://" + httpAddr + "/hello?name=next") }()
		select {
		case r := <-replies:
			if !strings.Contains(r, "hello, next") {
				t.Errorf("reply %q", r)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a later request hung: the breakpoint was left armed")
		}
	}
}

// startTarget builds dlv and the gohttp fixture (-N -l), runs the fixture
// and returns its HTTP address, pid and the dlv path.
func startTarget(t *testing.T) (httpAddr string, pid int, dlv string) {
	t.Helper()
	dir := t.TempDir()
	dlv = filepath.Join(dir, "dlv")
	target := filepath.Join(dir, "gohttp")
	goBuild(t, "-o", dlv, "github.com/go-delve/delve/cmd/dlv")
	goBuild(t, "-gcflags=all=-N -l", "-o", target, "../test/fixtures/gohttp")
	httpAddr = freeAddr(t)
	cmd := exec.Command(target, "-listen", httpAddr)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitHTTP(t, "http://"+httpAddr+"/healthz")
	return httpAddr, cmd.Process.Pid, dlv
}

// startAgent runs the agent on a free loopback port and returns its address
// and the channel Run's result arrives on.
func startAgent(t *testing.T, ctx context.Context, cfg Config) (string, <-chan error) {
	t.Helper()
	ready := make(chan string, 1)
	done := make(chan error, 1)
	cfg.Listen = "127.0.0.1:0"
	cfg.Ready = func(addr string) { ready <- addr }
	go func() { done <- Run(ctx, cfg) }()
	select {
	case addr := <-ready:
		return addr, done
	case err := <-done:
		t.Fatalf("agent: %v", err)
		return "", nil
	}
}

func goBuild(t *testing.T, args ...string) {
	t.Helper()
	cmd := exec.Command("go", append([]string{"build"}, args...)...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %v: %v\n%s", args, err, out)
	}
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func waitHTTP(t *testing.T, u string) {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if resp, err := http.Get(u); err == nil {
			resp.Body.Close()
			return
		}
	}
	t.Fatalf("%s never answered", u)
}

func get(u string) string {
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Get(u)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func lineOf(t *testing.T, file, text string) int {
	n, err := fixtures.LineOf(file, text)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

type syncLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestAgentExitsAfterIdleTTL: a session sets a breakpoint and disconnects
// with a DAP disconnect; after the TTL the agent detaches Delve and returns,
// and the target serves on without stopping.
func TestAgentExitsAfterIdleTTL(t *testing.T) {
	if testing.Short() {
		t.Skip("builds dlv and a target")
	}
	httpAddr, pid, dlv := startTarget(t)
	var log syncLog
	agentAddr, done := startAgent(t, context.Background(), Config{TTL: 2 * time.Second, Getenv: settings(DlvEnv, dlv), PID: pid, Log: &log})
	conn, err := net.Dial("tcp", agentAddr)
	if err != nil {
		t.Fatal(err)
	}
	c := daptest.NewClient(conn)
	c.Timeout = realDebuggerTimeout
	c.ExpectResponse(t, c.Send("initialize", godap.InitializeRequestArguments{AdapterID: "go", LinesStartAt1: true, ColumnsStartAt1: true, PathFormat: "path"}))
	c.ExpectResponse(t, c.Send("attach", map[string]any{"mode": "remote"}))
	src, _ := filepath.Abs("../test/fixtures/gohttp/main.go")
	c.ExpectResponse(t, c.Send("setBreakpoints", godap.SetBreakpointsArguments{
		Source: godap.Source{Path: src}, Breakpoints: []godap.SourceBreakpoint{{Line: lineOf(t, src, "message := fmt.Sprintf")}}}))
	c.ExpectResponse(t, c.Send("configurationDone", nil))
	c.ExpectAnyResponse(t, c.Send("disconnect", godap.DisconnectArguments{TerminateDebuggee: false}))
	conn.Close()
	left := time.Now()
	select {
	case err := <-done:
		t.Logf("agent returned %s after the client left: %v", time.Since(left).Round(100*time.Millisecond), err)
		if err != nil {
			t.Error(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("agent still running 30s after the client left with a 2s TTL; log:\n%s", log.String())
	}
	if r := get("http://" + httpAddr + "/hello?name=after"); !strings.Contains(r, "hello, after") {
		t.Errorf("target after the agent left: %q", r)
	}
	if !strings.Contains(log.String(), "idle for 2s") {
		t.Errorf("log does not say why the agent exited:\n%s", log.String())
	}
}

// TestAgentExplainsADebuggerThatCannotAttach: when Delve cannot attach (in
// a pod: SYS_PTRACE missing), the DAP client's initialize gets an error
// with Delve's own words, not a closed connection. A real dlv running as
// root here can always attach, so a script stands in for it at this seam.
func TestAgentExplainsADebuggerThatCannotAttach(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a target")
	}
	dir := t.TempDir()
	fakeDlv := filepath.Join(dir, "dlv")
	script := "#!/bin/sh\necho 'could not attach to pid 1: operation not permitted' >&2\nexit 1\n"
	if err := os.WriteFile(fakeDlv, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	_, pid, _ := startTarget(t)
	var log syncLog
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, _ := startAgent(t, ctx, Config{TTL: time.Hour, Getenv: settings(DlvEnv, fakeDlv), PID: pid, Log: &log, Runtime: "go"})
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := daptest.NewClient(conn)
	c.Timeout = realDebuggerTimeout
	resp := c.ExpectAnyResponse(t, c.Send("initialize", godap.InitializeRequestArguments{AdapterID: "go"}))
	if resp.Success || !strings.Contains(resp.ErrorText(), "operation not permitted") || !strings.Contains(resp.ErrorText(), "SYS_PTRACE") {
		t.Errorf("initialize answered %s", resp.Raw)
	}
}

// settings stands in for a debugger image's environment: key, value, ….
func settings(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

// realDebuggerTimeout bounds each wait on a real Delve: under -race, with
// the other packages' tests on the same two cores, its first
// setBreakpoints (DWARF loading) was seen to take over 10 s.
const realDebuggerTimeout = 45 * time.Second
