package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	godap "github.com/google/go-dap"

	"github.com/kdap/kdap/agent"
	"github.com/kdap/kdap/dap"
	"github.com/kdap/kdap/dap/daptest"
	"github.com/kdap/kdap/runtimes"
)

// roundTrip is one way to the debugger — kdap's or the direct one — whose
// requests a benchmark times while the target is stopped.
type roundTrip struct {
	name    string                           // "kdap" or "direct"
	connect func() (*daptest.Client, func()) // an attached, configured client and its cleanup
	stop    func()                           // sends the request that stops at the breakpoint
	expr    string                           // an expression over the locals there
	results map[string]map[string]float64    // request → path → ns/op, filled in
	sources godap.SetBreakpointsArguments    // the breakpoint
}

// run sets the breakpoint, stops there, times stackTrace, variables and
// evaluate as sub-benchmarks REQUEST/PATH, then continues and disconnects.
func (p roundTrip) run(b *testing.B) {
	c, cleanup := p.connect()
	defer cleanup()
	c.Timeout = time.Minute
	bp := c.ExpectResponse(b, c.Send("setBreakpoints", p.sources))
	if !daptest.Verified(bp) {
		b.Fatalf("%s: breakpoint not verified: %s", p.name, bp.Raw)
	}
	go p.stop()
	stopped := c.ExpectEvent(b, "stopped")
	var sb godap.StoppedEventBody
	daptest.Decode(b, stopped, &sb)
	st := c.ExpectResponse(b, c.Send("stackTrace", godap.StackTraceArguments{ThreadId: sb.ThreadId, Levels: 20}))
	var stack godap.StackTraceResponseBody
	daptest.Decode(b, st, &stack)
	frame := stack.StackFrames[0].Id
	sc := c.ExpectResponse(b, c.Send("scopes", map[string]any{"frameId": frame}))
	var scopes godap.ScopesResponseBody
	daptest.Decode(b, sc, &scopes)
	requests := []struct {
		name string
		args any
	}{
		{"stackTrace", godap.StackTraceArguments{ThreadId: sb.ThreadId, Levels: 20}},
		{"variables", godap.VariablesArguments{VariablesReference: scopes.Scopes[0].VariablesReference}},
		// A map: js-debug numbers frames from 0, which godap's struct would omit.
		{"evaluate", map[string]any{"expression": p.expr, "frameId": frame, "context": "repl"}},
	}
	for _, r := range requests {
		b.Run(r.name+"/"+p.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				c.ExpectResponse(b, c.Send(r.name, r.args))
			}
			if p.results[r.name] == nil {
				p.results[r.name] = map[string]float64{}
			}
			p.results[r.name][p.name] = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
		})
	}
	c.ExpectResponse(b, c.Send("continue", godap.ContinueArguments{ThreadId: sb.ThreadId}))
	c.ExpectAnyResponse(b, c.Send("disconnect", godap.DisconnectArguments{}))
}

// printRatios prints each request's time through kdap beside the direct one.
func printRatios(label, direct string, results map[string]map[string]float64) {
	for _, r := range []string{"stackTrace", "variables", "evaluate"} {
		d, k := results[r]["direct"], results[r]["kdap"]
		if d > 0 && k > 0 {
			fmt.Printf("%s round trip %-10s %s direct %7.3f ms   through kdap %7.3f ms   ratio %.2f\n", label, r, direct, d/1e6, k/1e6, k/d)
		}
	}
}

// throughKdap runs the agent in-process on pid (its driver for rt, with
// settings) and a kdap session on it that sends the debugger args as its
// attach; it returns the IDE's client, attached and configured, and the
// cleanup that ends both.
func throughKdap(b *testing.B, pid int, rt *runtimes.Runtime, settings map[string]string, args json.RawMessage, hb dap.Heartbeat) (*daptest.Client, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- agent.Run(ctx, agent.Config{Listen: "127.0.0.1:0", TTL: time.Hour, PID: pid, Runtime: rt.Name, Log: io.Discard,
			Getenv: func(k string) string { return settings[k] }, Ready: func(a string) { ready <- a }})
	}()
	var agentAddr string
	select {
	case agentAddr = <-ready:
	case err := <-done:
		cancel()
		b.Fatal(err)
	}
	conn, err := net.Dial("tcp", agentAddr)
	if err != nil {
		cancel()
		b.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go func() {
		ide, err := ln.Accept()
		ln.Close()
		if err == nil {
			dap.Serve(context.Background(), ide, fixedAttacher{conn: conn, args: args, heartbeat: hb}, dap.Options{})
		}
	}()
	ide, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		cancel()
		b.Fatal(err)
	}
	c := configured(b, ide, map[string]any{})
	return c, func() { ide.Close(); cancel(); <-done }
}

// configured runs initialize → attach → configurationDone on conn.
func configured(b *testing.B, conn net.Conn, args any) *daptest.Client {
	c := daptest.NewClient(conn)
	c.Timeout = time.Minute
	c.ExpectResponse(b, c.Send("initialize", godap.InitializeRequestArguments{AdapterID: "kdap", LinesStartAt1: true, ColumnsStartAt1: true, PathFormat: "path"}))
	attach := c.Send("attach", args)
	c.ExpectEvent(b, "initialized")
	c.ExpectResponses(b, c.Send("configurationDone", nil), attach)
	return c
}
