//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	godap "github.com/google/go-dap"

	"github.com/kdap/kdap/dap"
	"github.com/kdap/kdap/dap/daptest"
	"github.com/kdap/kdap/test/fixtures"
)

// relayRounds is how many times each request is timed, per path, per
// benchmark iteration.
const relayRounds = 100

// inventorySize is how many structs the large variables response holds.
const inventorySize = 10000

// BenchmarkRelayThroughPortForward times DAP round trips as the IDE sees
// them through kdap (kdap dap's code in-process, its port-forward, the
// agent, Delve) against the same requests straight to Delve through a
// client-go port-forward (the manual path's Delve, same image), on two pods
// of the Go fixture stopped at the same breakpoint, the requests
// alternating between the two: p50 and p99 of threads, stackTrace and
// variables, and the throughput of a variables response of 10 000 structs.
func BenchmarkRelayThroughPortForward(b *testing.B) {
	ns := newNamespace(b, nil)
	root, mainGo := localCopy(b)
	line := lineOf(b, mainGo, "count := len(items)")
	remote := filepath.Join(env.repo, "test", "fixtures", "gohttp", "main.go")
	createPod(b, ns, "kdap", fixtures.GoHTTPImage)
	createPod(b, ns, "direct", fixtures.GoHTTPImage)
	svcKdap, svcDirect := podForward(b, ns, "kdap", fixtures.GoHTTPPort), podForward(b, ns, "direct", fixtures.GoHTTPPort)
	time.Sleep(2 * time.Second) // as pods that have served a while

	k, conn := inProcessSession(b)
	defer conn.Close()
	k.ExpectResponse(b, k.Send("initialize", godap.InitializeRequestArguments{AdapterID: "kdap", LinesStartAt1: true, ColumnsStartAt1: true, PathFormat: "path"}))
	attachSeq := k.Send("attach", map[string]any{"target": "kdap", "namespace": ns, "localRoot": root, "runtime": "go"})
	k.ExpectEvent(b, "initialized")
	k.ExpectResponses(b, attachSeq, k.Send("setBreakpoints", godap.SetBreakpointsArguments{Source: godap.Source{Path: mainGo}, Breakpoints: []godap.SourceBreakpoint{{Line: line}}}))
	k.ExpectResponse(b, k.Send("configurationDone", nil))
	direct := startManualGo(b, ns, "direct", remote, line)

	url := "http://%s/inventory?n=" + fmt.Sprint(inventorySize)
	replyKdap, replyDirect := getAsync(fmt.Sprintf(url, svcKdap)), getAsync(fmt.Sprintf(url, svcDirect))
	paths := []*relayPath{stoppedPath(b, "kdap", k), stoppedPath(b, "direct", direct.c)}
	b.ResetTimer()
	for range b.N {
		for range relayRounds {
			for _, p := range paths {
				p.time(b, "threads", "threads", nil)
				p.time(b, "stackTrace", "stackTrace", godap.StackTraceArguments{ThreadId: p.thread, Levels: 20})
				p.time(b, "variables", "variables", godap.VariablesArguments{VariablesReference: p.locals})
			}
		}
		for range 5 {
			for _, p := range paths {
				p.time(b, "variables-large", "variables", godap.VariablesArguments{VariablesReference: p.items, Filter: "indexed", Start: 0, Count: inventorySize})
			}
		}
	}
	b.StopTimer()

	kd, dr := paths[0], paths[1]
	fmt.Printf("relay through the real port-forward (Go, %d requests of each kind per path, alternating):\n", b.N*relayRounds)
	for _, r := range []string{"threads", "stackTrace", "variables"} {
		k50, k99 := percentile(kd.took[r], 50), percentile(kd.took[r], 99)
		d50, d99 := percentile(dr.took[r], 50), percentile(dr.took[r], 99)
		fmt.Printf("  %-10s direct p50 %6.2f ms p99 %6.2f ms   kdap p50 %6.2f ms p99 %6.2f ms   ratio p50 %.2f× (goal ≤ 1.05×) p99 %.2f× (goal ≤ 1.10×)\n",
			r, ms(d50), ms(d99), ms(k50), ms(k99), float64(k50)/float64(d50), float64(k99)/float64(d99))
		b.ReportMetric(float64(k50)/float64(d50), r+"-p50-ratio")
	}
	kt, dt := kd.throughput("variables-large"), dr.throughput("variables-large")
	fmt.Printf("  variables of %d structs (%d KB): direct %.1f MB/s (%.1f ms)   kdap %.1f MB/s (%.1f ms)   ratio %.2f× (goal ≥ 0.95×)\n",
		inventorySize, kd.bytes["variables-large"]/1024, dt, ms(percentile(dr.took["variables-large"], 50)), kt, ms(percentile(kd.took["variables-large"], 50)), kt/dt)
	b.ReportMetric(kt/dt, "large-throughput-ratio")

	for _, p := range paths {
		p.c.ExpectResponse(b, p.c.Send("continue", godap.ContinueArguments{ThreadId: p.thread}))
	}
	expectReply(b, replyKdap, fmt.Sprintf("%d items", inventorySize), 10*time.Second)
	expectReply(b, replyDirect, fmt.Sprintf("%d items", inventorySize), 10*time.Second)
	k.ExpectAnyResponse(b, k.Send("disconnect", godap.DisconnectArguments{}))
	direct.close(b)
}

// relayPath is one way to the debugger, stopped at the breakpoint, with
// the round trips timed on it.
type relayPath struct {
	name          string
	c             *daptest.Client
	thread        int
	locals, items int // variablesReference of the top frame's locals and of its items
	took          map[string][]time.Duration
	bytes         map[string]int // size of the last response, by kind
}

// stoppedPath waits for c's stop at the breakpoint and finds what the
// timed requests ask for.
func stoppedPath(b *testing.B, name string, c *daptest.Client) *relayPath {
	stopped := c.Expect(b, name+": stopped at the breakpoint", func(m *dap.Message) bool {
		return m.Type == "event" && m.Event == "stopped" && strings.Contains(string(m.Raw), `"reason":"breakpoint"`)
	})
	var sb godap.StoppedEventBody
	daptest.Decode(b, stopped, &sb)
	p := &relayPath{name: name, c: c, thread: sb.ThreadId, took: map[string][]time.Duration{}, bytes: map[string]int{}}
	var stack godap.StackTraceResponseBody
	daptest.Decode(b, c.ExpectResponse(b, c.Send("stackTrace", godap.StackTraceArguments{ThreadId: p.thread, Levels: 1})), &stack)
	var scopes godap.ScopesResponseBody
	daptest.Decode(b, c.ExpectResponse(b, c.Send("scopes", godap.ScopesArguments{FrameId: stack.StackFrames[0].Id})), &scopes)
	for _, s := range scopes.Scopes {
		if s.Name != "Locals" && s.Name != "Arguments" {
			continue
		}
		var vars godap.VariablesResponseBody
		daptest.Decode(b, c.ExpectResponse(b, c.Send("variables", godap.VariablesArguments{VariablesReference: s.VariablesReference})), &vars)
		for _, v := range vars.Variables {
			if v.Name == "items" {
				p.items = v.VariablesReference
			}
		}
		if s.Name == "Locals" || p.locals == 0 {
			p.locals = s.VariablesReference
		}
	}
	if p.items == 0 || p.locals == 0 {
		b.Fatalf("%s: no items among the top frame's variables (scopes %+v)", name, scopes.Scopes)
	}
	return p
}

// time sends one request and records its round trip under kind.
func (p *relayPath) time(b *testing.B, kind, command string, args any) {
	start := time.Now()
	m := p.c.ExpectResponse(b, p.c.Send(command, args))
	p.took[kind] = append(p.took[kind], time.Since(start))
	p.bytes[kind] = len(m.Raw)
	if kind == "variables-large" {
		var body godap.VariablesResponseBody
		if err := json.Unmarshal(m.Body(), &body); err != nil || len(body.Variables) != inventorySize {
			b.Fatalf("%s: the large variables response holds %d variables, want %d (%v)", p.name, len(body.Variables), inventorySize, err)
		}
	}
}

// throughput is the size of kind's response over its median round trip,
// in MB/s.
func (p *relayPath) throughput(kind string) float64 {
	return float64(p.bytes[kind]) / 1e6 / percentile(p.took[kind], 50).Seconds()
}
