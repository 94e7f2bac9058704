// Package bench measures kdap against the direct path in the same run.
// Run: go test -bench . -run '^$' ./test/bench/
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	godap "github.com/google/go-dap"

	"github.com/kdap/kdap/agent"
	"github.com/kdap/kdap/dap"
	"github.com/kdap/kdap/dap/daptest"
	"github.com/kdap/kdap/test/fixtures"
)

// BenchmarkRoundTrip compares DAP requests sent straight to the agent's
// Delve with the same requests through kdap's proxy session, while the
// target is stopped at a breakpoint. Both paths use the same agent and
// Delve; the difference is kdap's relaying (parse, renumber, queue).
func BenchmarkRoundTrip(b *testing.B) {
	agentAddr, trigger := startTarget(b)
	results := map[string]map[string]float64{} // request → path → ns/op
	for _, path := range []string{"direct", "kdap"} {
		conn := dial(b, agentAddr, path)
		c := daptest.NewClient(conn)
		threadID, varsRef := stopAtBreakpoint(b, c, trigger)
		requests := []struct {
			name string
			args any
		}{
			{"threads", nil},
			{"stackTrace", godap.StackTraceArguments{ThreadId: threadID, Levels: 20}},
			{"variables", godap.VariablesArguments{VariablesReference: varsRef}},
		}
		for _, r := range requests {
			b.Run(r.name+"/"+path, func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					c.ExpectResponse(b, c.Send(r.name, r.args))
				}
				if results[r.name] == nil {
					results[r.name] = map[string]float64{}
				}
				results[r.name][path] = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
			})
		}
		c.ExpectResponse(b, c.Send("continue", godap.ContinueArguments{}))
		c.ExpectAnyResponse(b, c.Send("disconnect", godap.DisconnectArguments{}))
		conn.Close()
		time.Sleep(200 * time.Millisecond) // let the agent release the target before the next path
	}
	for _, r := range []string{"threads", "stackTrace", "variables"} {
		d, k := results[r]["direct"], results[r]["kdap"]
		if d > 0 && k > 0 {
			fmt.Printf("round trip %-10s direct %7.3f ms   through kdap %7.3f ms   ratio %.2f\n", r, d/1e6, k/1e6, k/d)
		}
	}
}

// dial connects straight to the agent, or to an in-process kdap session
// whose Attacher connects to the agent.
func dial(b *testing.B, agentAddr, path string) net.Conn {
	conn, err := net.Dial("tcp", agentAddr)
	if err != nil {
		b.Fatal(err)
	}
	if path == "direct" {
		return conn
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		ide, err := ln.Accept()
		ln.Close()
		if err != nil {
			return
		}
		dap.Serve(context.Background(), ide, fixedAttacher{conn: conn, args: json.RawMessage(`{"mode":"remote"}`)}, dap.Options{})
	}()
	ide, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	return ide
}

// fixedAttacher hands the session an open connection to the agent and the
// debugger's attach arguments.
type fixedAttacher struct {
	conn      net.Conn
	args      json.RawMessage
	heartbeat dap.Heartbeat
}

func (a fixedAttacher) Attach(context.Context, dap.AttachRequest, dap.Reporter) (*dap.Debugger, error) {
	return &dap.Debugger{Conn: a.conn, AttachArguments: a.args, Heartbeat: a.heartbeat}, nil
}

// stopAtBreakpoint attaches, sets a breakpoint in the fixture's handler,
// triggers a request and returns the stopped thread and its top frame's
// locals reference.
func stopAtBreakpoint(b *testing.B, c *daptest.Client, trigger func()) (threadID, varsRef int) {
	c.ExpectResponse(b, c.Send("initialize", godap.InitializeRequestArguments{AdapterID: "go", LinesStartAt1: true, ColumnsStartAt1: true, PathFormat: "path"}))
	c.ExpectResponse(b, c.Send("attach", map[string]any{"mode": "remote"}))
	src, _ := filepath.Abs("../fixtures/gohttp/main.go")
	c.ExpectResponse(b, c.Send("setBreakpoints", godap.SetBreakpointsArguments{Source: godap.Source{Path: src}, Breakpoints: []godap.SourceBreakpoint{{Line: lineOf(b, src, "message := fmt.Sprintf")}}}))
	c.ExpectResponse(b, c.Send("configurationDone", nil))
	go trigger()
	stopped := c.ExpectEvent(b, "stopped")
	var sb godap.StoppedEventBody
	daptest.Decode(b, stopped, &sb)
	st := c.ExpectResponse(b, c.Send("stackTrace", godap.StackTraceArguments{ThreadId: sb.ThreadId, Levels: 1}))
	var stack godap.StackTraceResponseBody
	daptest.Decode(b, st, &stack)
	sc := c.ExpectResponse(b, c.Send("scopes", godap.ScopesArguments{FrameId: stack.StackFrames[0].Id}))
	var scopes godap.ScopesResponseBody
	daptest.Decode(b, sc, &scopes)
	return sb.ThreadId, scopes.Scopes[0].VariablesReference
}

// startTarget builds and runs the gohttp fixture and the agent (with a
// freshly built dlv) in-process; it returns the agent's address and a
// function sending one request to the target.
func startTarget(b *testing.B) (string, func()) {
	dir := b.TempDir()
	dlv := filepath.Join(dir, "dlv")
	target := filepath.Join(dir, "gohttp")
	goBuild(b, "-o", dlv, "github.com/go-delve/delve/cmd/dlv")
	goBuild(b, "-gcflags=all=-N -l", "-o", target, "../fixtures/gohttp")
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	httpAddr := l.Addr().String()
	l.Close()
	cmd := exec.Command(target, "-listen", httpAddr)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for i := 0; i < 200; i++ {
		if resp, err := http.Get("http://" + httpAddr + "/healthz"); err == nil {
			resp.Body.Close()
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- agent.Run(ctx, agent.Config{Listen: "127.0.0.1:0", TTL: time.Hour, PID: cmd.Process.Pid, Log: io.Discard,
			Getenv: func(k string) string { return map[string]string{agent.DlvEnv: dlv}[k] },
			Ready:  func(a string) { ready <- a }})
	}()
	b.Cleanup(func() { cancel(); <-done })
	trigger := func() {
		resp, err := (&http.Client{Timeout: time.Minute}).Get("http://" + httpAddr + "/hello?name=bench")
		if err == nil {
			resp.Body.Close()
		}
	}
	select {
	case a := <-ready:
		return a, trigger
	case err := <-done:
		b.Fatal(err)
	}
	return "", nil
}

func goBuild(b *testing.B, args ...string) {
	cmd := exec.Command("go", append([]string{"build"}, args...)...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build %v: %v\n%s", args, err, out)
	}
}

func lineOf(b *testing.B, file, text string) int {
	n, err := fixtures.LineOf(file, text)
	if err != nil {
		b.Fatal(err)
	}
	return n
}
