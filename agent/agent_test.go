package agent

import (
	"bufio"
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
)

// TestAgentReleasesTheTargetWhenTheClientDrops uses real components: the
// gohttp fixture as the target, the agent, Delve, and a DAP client that
// stops at a breakpoint and then drops its connection without a disconnect
// (what happens when kdap is killed).
func TestAgentReleasesTheTargetWhenTheClientDrops(t *testing.T) {
	if testing.Short() {
		t.Skip("builds dlv and a target")
	}
	dir := t.TempDir()
	dlv := filepath.Join(dir, "dlv")
	target := filepath.Join(dir, "gohttp")
	goBuild(t, "-o", dlv, "github.com/go-delve/delve/cmd/dlv")
	goBuild(t, "-gcflags=all=-N -l", "-o", target, "../test/fixtures/gohttp")

	httpAddr := freeAddr(t)
	cmd := exec.Command(target, "-listen", httpAddr)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	waitHTTP(t, "http://"+httpAddr+"/healthz")

	var log syncLog
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{Listen: "127.0.0.1:0", Runtime: "auto", TTL: time.Hour, Dlv: dlv, PID: cmd.Process.Pid, Log: &log,
			Ready: func(addr string) { ready <- addr }})
	}()
	var agentAddr string
	select {
	case agentAddr = <-ready:
	case err := <-done:
		t.Fatalf("agent: %v\n%s", err, log.String())
	}
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
	if st.Target == nil || st.Target.Runtime != "go" || st.Target.PID != cmd.Process.Pid || st.Debugger != "not started" {
		t.Fatalf("status = %+v", st)
	}

	conn, err := net.Dial("tcp", agentAddr)
	if err != nil {
		t.Fatal(err)
	}
	c := daptest.NewClient(conn)
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
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		if strings.Contains(sc.Text(), text) {
			return n
		}
	}
	t.Fatalf("%q not in %s", text, file)
	return 0
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
	dir := t.TempDir()
	dlv := filepath.Join(dir, "dlv")
	target := filepath.Join(dir, "gohttp")
	goBuild(t, "-o", dlv, "github.com/go-delve/delve/cmd/dlv")
	goBuild(t, "-gcflags=all=-N -l", "-o", target, "../test/fixtures/gohttp")
	httpAddr := freeAddr(t)
	cmd := exec.Command(target, "-listen", httpAddr)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	waitHTTP(t, "http://"+httpAddr+"/healthz")

	var log syncLog
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(context.Background(), Config{Listen: "127.0.0.1:0", TTL: 2 * time.Second, Dlv: dlv, PID: cmd.Process.Pid, Log: &log,
			Ready: func(addr string) { ready <- addr }})
	}()
	conn, err := net.Dial("tcp", <-ready)
	if err != nil {
		t.Fatal(err)
	}
	c := daptest.NewClient(conn)
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
