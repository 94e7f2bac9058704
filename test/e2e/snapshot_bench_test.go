//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	godap "github.com/google/go-dap"

	"github.com/kdap/kdap/attach"
	"github.com/kdap/kdap/dap"
	"github.com/kdap/kdap/dap/daptest"
	"github.com/kdap/kdap/diagnose"
	"github.com/kdap/kdap/test/fixtures"
)

// BenchmarkSnapshots measures snapshot mode on the Go and Python services:
// how long each breakpoint hit holds the target (kdap's measure, from the
// stopped event to the answer to its continue: p50 and p99), and the
// service's request latency (p50/p99 through a port-forward) with no
// session and with a snapshot taken on every request — the direct path
// and kdap's, in the same run. Each b.N is 20 requests.
func BenchmarkSnapshots(b *testing.B) {
	for _, tg := range []struct {
		runtime string
		setUp   func(testing.TB) (string, stagingService)
	}{{"go", goStaging}, {"python", pyStaging}, {"node", nodeStaging}} {
		root, s := tg.setUp(b)
		ns := newNamespace(b, nil)
		createPod(b, ns, "svc", s.image)
		waitLog(b, ns, "svc", s.ready)
		svc := "http://" + podForward(b, ns, "svc", s.port)
		b.Run(tg.runtime, func(b *testing.B) {
			n := 20 * b.N
			idle50, idle99 := requestLatency(b, svc+s.request(1), n)

			kdapSide, clientSide := net.Pipe()
			ctx, cancel := context.WithCancel(context.Background())
			served := make(chan error, 1)
			cfg := attach.Config{Kubeconfig: env.cluster.Kubeconfig(), Images: fixtures.AgentImages, AgentTTL: 10 * time.Minute}
			go func() { served <- dap.Serve(ctx, kdapSide, &attach.Attacher{Config: cfg}, dap.Options{}) }()
			defer func() { cancel(); <-served }()
			c := daptest.NewClient(clientSide)
			c.Timeout = 3 * time.Minute
			defer c.Close()
			c.ExpectResponse(b, c.Send("initialize", godap.InitializeRequestArguments{AdapterID: "kdap", LinesStartAt1: true, ColumnsStartAt1: true, PathFormat: "path"}))
			att := c.Send("attach", map[string]any{"target": "pod/svc", "namespace": ns, "localRoot": root, "runtime": s.runtime, "mode": "snapshot"})
			c.ExpectEvent(b, "initialized")
			bp := c.Send("setBreakpoints", godap.SetBreakpointsArguments{Source: godap.Source{Path: s.file}, Breakpoints: []godap.SourceBreakpoint{{Line: s.line}}})
			c.ExpectResponses(b, att, bp, c.Send("configurationDone", nil))

			var held, took []time.Duration
			b.ResetTimer()
			for i := 1; i <= n; i++ {
				start := time.Now()
				if r := <-getAsync(svc + s.request(i)); r == "" || r[:5] == "error" {
					b.Fatalf("request %d: %q", i, r)
				}
				took = append(took, time.Since(start))
				var out godap.OutputEventBody
				daptest.Decode(b, c.Expect(b, "a snapshot", output("console", "kdap snapshot")), &out)
				held = append(held, heldOf(b, out.Output))
			}
			b.StopTimer()
			h50, h99 := percentile(held, 50), percentile(held, 99)
			s50, s99 := percentile(took, 50), percentile(took, 99)
			b.ReportMetric(ms(h50), "hit-pause-p50-ms")
			b.ReportMetric(ms(h99), "hit-pause-p99-ms")
			b.ReportMetric(ms(s50)/ms(idle50), "req-p50-ratio")
			fmt.Printf("%s snapshots: a hit holds the target %s p50, %s p99 (%d hits); requests p50/p99 %s/%s without a session, %s/%s (%.2f×/%.2f×) with a snapshot on every request\n",
				tg.runtime, diagnose.Duration(h50), diagnose.Duration(h99), n, diagnose.Duration(idle50), diagnose.Duration(idle99),
				diagnose.Duration(s50), diagnose.Duration(s99), ms(s50)/ms(idle50), ms(s99)/ms(idle99))
			c.ExpectResponse(b, c.Send("disconnect", godap.DisconnectArguments{}))
		})
	}
}
