//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kdap/kdap/attach"
	"github.com/kdap/kdap/diagnose"
	"github.com/kdap/kdap/runtimes"
	"github.com/kdap/kdap/test/fixtures"
)

// diagTargets are the serving fixtures the diagnostics benchmark takes
// from: image, what the service logs once it serves, its port, and a
// request path.
var diagTargets = []struct {
	runtime, image, ready string
	port                  int
	path                  string
}{
	{runtimes.Go.Name, fixtures.GoHTTPImage, "gohttp listening", fixtures.GoHTTPPort, "/hello?name=bench"},
	{runtimes.Node.Name, fixtures.NodeHTTPImage, "nodehttp listening", fixtures.NodeHTTPPort, "/quote?items=2"},
	{runtimes.Python.Name, fixtures.PyHTTPImage, "serving on", fixtures.GoHTTPPort, "/quote?items=2"},
	{runtimes.Java.Name, fixtures.JavaHTTPImage, "javahttp listening", fixtures.JavaHTTPPort, "/quote?items=2"},
}

// BenchmarkDiagnostics takes, of each runtime's serving fixture, b.N stack
// dumps while a request keeps a thread busy in the handler — reporting how
// long the target was stopped for each (the agent's measure: p50 and the
// worst) and how long kdap took — and measures the service's request
// latency (100 requests through a port-forward, p50 and p99) with no
// diagnostic running and while kdap profile records. Go's core dump pause
// is reported too. Each runtime's pod and agent are set up once, for the
// benchmark's runs (b.N = 1, then b.N).
func BenchmarkDiagnostics(b *testing.B) {
	cfg := attach.Config{Kubeconfig: env.cluster.Kubeconfig(), Images: fixtures.AgentImages, AgentTTL: 10 * time.Minute}
	for _, tg := range diagTargets {
		ns := newNamespace(b, nil)
		createPod(b, ns, "svc", tg.image)
		waitLog(b, ns, "svc", tg.ready)
		svc := "http://" + podForward(b, ns, "svc", tg.port)
		args := attach.Args{Target: "pod/svc", Namespace: ns, Runtime: tg.runtime}
		warm := true // the first take injects the agent
		b.Run(tg.runtime, func(b *testing.B) {
			take := func(kind string, params url.Values) *diagnose.Result {
				res, err := diagnose.Take(context.Background(), cfg, diagnose.Request{Args: args, Kind: kind, Params: params,
					Output: filepath.Join(b.TempDir(), "out")}, quietReporter{})
				if err != nil {
					b.Fatalf("%s: %v", kind, err)
				}
				return res
			}
			if warm {
				take(runtimes.DiagnosticThreads, nil)
				warm = false
			}
			busy := getAsync(fmt.Sprintf("%s/busy?ms=%d", svc, 1500*b.N+1000))
			time.Sleep(300 * time.Millisecond)
			var pauses, took []time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				res := take(runtimes.DiagnosticThreads, nil)
				pauses, took = append(pauses, res.Pause), append(took, res.Elapsed)
			}
			b.StopTimer()
			if r := <-busy; !strings.HasPrefix(r, "busy for") {
				b.Fatalf("the busy request: %q", r)
			}
			p50, worst := percentile(pauses, 50), percentile(pauses, 100)
			b.ReportMetric(ms(p50), "dump-pause-p50-ms")
			b.ReportMetric(ms(worst), "dump-pause-max-ms")
			b.ReportMetric(ms(percentile(took, 50)), "dump-total-p50-ms")

			idle50, idle99 := requestLatency(b, svc+tg.path, 100)
			profiling := make(chan *diagnose.Result, 1)
			go func() { profiling <- take(runtimes.DiagnosticRecording, url.Values{"duration": {"4s"}}) }()
			time.Sleep(1500 * time.Millisecond) // Python's sampler starts after gdb, ≈ 1 s
			busy50, busy99 := requestLatency(b, svc+tg.path, 100)
			rec := <-profiling
			b.ReportMetric(ms(idle50), "req-p50-ms")
			b.ReportMetric(ms(busy50), "req-p50-profiling-ms")
			b.ReportMetric(ms(busy99)/ms(idle99), "req-p99-ratio")
			started := "the target never stopped"
			if rec.Pause > 0 {
				started = "starting it stopped the target " + diagnose.Duration(rec.Pause).String()
			}
			line := fmt.Sprintf("%s diagnostics: a stack dump stops the target %s (p50 of %d; worst %s), kdap dump takes %s; requests p50/p99 %s/%s idle, %s/%s (%.2f×/%.2f×) while kdap profile records (%s)",
				tg.runtime, diagnose.Duration(p50), b.N, diagnose.Duration(worst), percentile(took, 50).Round(time.Millisecond),
				diagnose.Duration(idle50), diagnose.Duration(idle99), diagnose.Duration(busy50), diagnose.Duration(busy99),
				ms(busy50)/ms(idle50), ms(busy99)/ms(idle99), started)
			if tg.runtime == runtimes.Go.Name {
				core := take(runtimes.DiagnosticCore, nil)
				b.ReportMetric(ms(core.Pause), "core-pause-ms")
				line += fmt.Sprintf("; a core dump stops it %s for %s", diagnose.Duration(core.Pause), diagnose.Bytes(core.Size))
			}
			fmt.Println(line)
		})
	}
}

// requestLatency sends n requests to u one after another and returns the
// p50 and p99 of their round trips.
func requestLatency(b *testing.B, u string, n int) (p50, p99 time.Duration) {
	client := &http.Client{Timeout: 30 * time.Second}
	var d []time.Duration
	for i := 0; i < n; i++ {
		start := time.Now()
		resp, err := client.Get(u)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		d = append(d, time.Since(start))
	}
	return percentile(d, 50), percentile(d, 99)
}

// percentile is the p-th percentile of d (nearest rank; 100 is the max).
func percentile(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (len(s)*p + 99) / 100
	return s[max(i-1, 0)]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// quietReporter drops kdap's progress messages.
type quietReporter struct{}

func (quietReporter) Progress(string) {}
func (quietReporter) Output(string)   {}
