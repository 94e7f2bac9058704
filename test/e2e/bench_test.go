//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strings"
	"testing"
	"time"

	godap "github.com/google/go-dap"

	"github.com/kdap/kdap/attach"
	"github.com/kdap/kdap/dap"
	"github.com/kdap/kdap/dap/daptest"
	"github.com/kdap/kdap/test/fixtures"
)

// BenchmarkAttachLatency attaches to a fresh pod per iteration (up for 2 s,
// as a pod that has been serving a while) with the same code as `kdap dap`
// and breaks the time down by kdap's own progress events:
// inject (patch → Running), forward (Running → agent answering through the
// forward), dlv-attached (→ attach response), bp-verified (→ breakpoint
// verified). Compare with DESIGN.md's manual path (patch → verified 351 ms).
func BenchmarkAttachLatency(b *testing.B) {
	ns := newNamespace(b, nil)
	root, mainGo := localCopy(b)
	line := lineOf(b, mainGo, "message := fmt.Sprintf")
	phases := map[string][]time.Duration{}
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		pod := fmt.Sprintf("bench-%d", i)
		createPod(b, ns, pod, fixtures.GoHTTPImage)
		time.Sleep(2 * time.Second)
		b.StartTimer()

		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		go func() {
			conn, err := ln.Accept()
			ln.Close()
			if err == nil {
				dap.Serve(context.Background(), conn, &attach.Attacher{Config: attach.Config{
					Kubeconfig: env.cluster.Kubeconfig(), Images: map[string]string{"go": fixtures.GoAgentImage}, AgentTTL: time.Minute}}, dap.Options{})
			}
		}()
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		c := daptest.NewClient(conn)
		c.Timeout = time.Minute
		c.ExpectResponse(b, c.Send("initialize", godap.InitializeRequestArguments{AdapterID: "kdap", LinesStartAt1: true, ColumnsStartAt1: true, PathFormat: "path", SupportsProgressReporting: true}))
		start := time.Now()
		seen := map[string]time.Time{}
		attachSeq := c.Send("attach", map[string]any{"target": pod, "namespace": ns, "localRoot": root})
		c.Expect(b, "attach response", func(m *dap.Message) bool {
			if m.Type == "event" && m.Event == "progressUpdate" {
				for _, step := range []string{"adding debugger container", "waiting for the debugger", "connecting to the debugger"} {
					if strings.Contains(string(m.Raw), step) {
						seen[step] = time.Now()
					}
				}
			}
			if m.Type == "event" && m.Event == "output" && strings.Contains(string(m.Raw), "kdap: attached to pid") {
				seen["forwarded"] = time.Now()
			}
			return m.Type == "response" && m.RequestSeq == attachSeq
		})
		attached := time.Now()
		c.ExpectResponse(b, c.Send("setBreakpoints", godap.SetBreakpointsArguments{Source: godap.Source{Path: mainGo}, Breakpoints: []godap.SourceBreakpoint{{Line: line}}}))
		verified := time.Now()
		b.StopTimer()
		patch := seen["adding debugger container"]
		phases["inject"] = append(phases["inject"], seen["connecting to the debugger"].Sub(patch))
		phases["forward"] = append(phases["forward"], seen["forwarded"].Sub(seen["connecting to the debugger"]))
		phases["dlv-attached"] = append(phases["dlv-attached"], attached.Sub(seen["forwarded"]))
		phases["bp-verified"] = append(phases["bp-verified"], verified.Sub(attached))
		phases["patch→verified"] = append(phases["patch→verified"], verified.Sub(patch))
		phases["attach→verified"] = append(phases["attach→verified"], verified.Sub(start))
		c.ExpectAnyResponse(b, c.Send("disconnect", godap.DisconnectArguments{}))
		conn.Close()
		b.StartTimer()
	}
	b.StopTimer()
	var report []string
	for _, name := range []string{"inject", "forward", "dlv-attached", "bp-verified", "patch→verified", "attach→verified"} {
		m := median(phases[name])
		b.ReportMetric(float64(m.Microseconds())/1000, name+"-ms")
		report = append(report, fmt.Sprintf("%s %s", name, m.Round(time.Millisecond)))
	}
	fmt.Printf("attach latency (median of %d fresh pods): %s\n", b.N, strings.Join(report, ", "))
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}
