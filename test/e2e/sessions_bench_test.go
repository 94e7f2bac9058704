//go:build e2e

package e2e

import (
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	godap "github.com/google/go-dap"
	"github.com/google/pprof/profile"

	"github.com/kdap/kdap/dap/daptest"
	"github.com/kdap/kdap/test/fixtures"
)

// sessionsFlag is how many sessions BenchmarkManySessions holds at once:
// CI runs a few; the team-sized run is
// `go test -tags e2e -run '^$' -bench ManySessions -benchtime 1x ./test/e2e/ -args -sessions=50`.
var sessionsFlag = flag.Int("sessions", 4, "sessions BenchmarkManySessions holds at once through one kdap dap")

// controlRequests is how many requests the app itself gets after each
// stop, through a forward of its own: the reference for what the node and
// the attached debuggers do to latency without kdap in the path.
const controlRequests = 30

// inspectRounds is how many times each session sends stackTrace, scopes
// and threads while stopped (the first round is not counted).
const inspectRounds = 20

// BenchmarkManySessions holds -sessions sessions at once through one `kdap
// dap` process (the real binary), on as many fresh pods, Go and Python
// alternating. Each session in turn is stopped at a breakpoint and
// inspected while all the others stay attached, and the same is done first
// with one session alone. It prints kdap's resident memory, the request
// latency p50/p99 beside the single session's, the attach of one more Go
// session beside the first attach on the idle kdap, each debugger
// container's memory (agent and debugger, read from the node's /proc),
// where kdap's heap goes (its own profile), and a control: the same app
// through a forward of its own, alone and with the others attached.
// Each run is one such round, whatever b.N: run it with -benchtime 1x.
func BenchmarkManySessions(b *testing.B) {
	n := *sessionsFlag
	ns := newNamespace(b, nil)
	goRoot, mainGo := localCopy(b)
	goLine := lineOf(b, mainGo, "message := fmt.Sprintf")
	pyRoot, pricing := pyLocalCopy(b)
	pyLine := lineOf(b, pricing, "total = items * unit")
	type target struct {
		pod, runtime, root, file, svc, url, reply string
		control                                   string // a path of the app with no breakpoint
		line                                      int
		c                                         *daptest.Client
	}
	newTarget := func(i int, runtime string) *target {
		t := &target{pod: fmt.Sprintf("s-%d", i), runtime: "go", root: goRoot, file: mainGo, line: goLine,
			url: "/hello?name=s" + strconv.Itoa(i), reply: "hello, s" + strconv.Itoa(i), control: "/healthz"}
		image := fixtures.GoHTTPImage
		if runtime == "python" {
			t.runtime, t.root, t.file, t.line, image = "python", pyRoot, pricing, pyLine, fixtures.PyHTTPImage
			t.url, t.reply, t.control = "/quote?items=3", "total: 21", "/busy?ms=0"
		}
		createPod(b, ns, t.pod, image)
		t.svc = serviceForward(b, ns, t.pod)
		return t
	}
	start := time.Now()
	targets := make([]*target, n+1) // the last: one more Go session, onto the busy kdap
	for i := range targets {
		runtime := "go"
		if i%2 == 1 && i < n {
			runtime = "python"
		}
		targets[i] = newTarget(i, runtime)
	}
	fmt.Printf("many sessions: %d pods Running in %s\n", n+1, time.Since(start).Round(time.Second))
	time.Sleep(2 * time.Second)

	pprofAddr := freeLoopbackAddr(b)
	b.Setenv("KDAP_PPROF_LISTEN", pprofAddr) // read after the sessions: where kdap's memory goes
	k := startKdap(b)
	attach := func(t *target) time.Duration {
		t.c = k.connect(b)
		t.c.ExpectResponse(b, t.c.Send("initialize", godap.InitializeRequestArguments{AdapterID: "kdap", LinesStartAt1: true, ColumnsStartAt1: true, PathFormat: "path"}))
		start := time.Now()
		attachSeq := t.c.Send("attach", map[string]any{"target": t.pod, "namespace": ns, "localRoot": t.root, "runtime": t.runtime})
		t.c.ExpectEvent(b, "initialized")
		return verifyBreakpoint(b, t.c, attachSeq, false, t.file, t.line, t.pod).Sub(start)
	}
	took := map[string][]time.Duration{} // request latencies, by "single go", "many python", "control many go", …
	control := &http.Client{Timeout: 10 * time.Second}
	inspect := func(t *target, as string) {
		reply := getAsync("http://" + t.svc + t.url)
		thread, frame := expectStop(b, t.c, t.file, t.line)
		for round := range inspectRounds {
			for _, req := range []struct {
				command string
				args    any
			}{
				{"stackTrace", godap.StackTraceArguments{ThreadId: thread, Levels: 20}},
				{"scopes", godap.ScopesArguments{FrameId: frame}},
				{"threads", nil},
			} {
				start := time.Now()
				t.c.ExpectResponse(b, t.c.Send(req.command, req.args))
				if round > 0 { // the first warms the debugger's caches for this stop
					took[as+" "+t.runtime] = append(took[as+" "+t.runtime], time.Since(start))
				}
			}
		}
		t.c.ExpectResponse(b, t.c.Send("continue", godap.ContinueArguments{ThreadId: thread}))
		expectReply(b, reply, t.reply, 10*time.Second)
		// The control: the same pod's app, debugged and running, through a
		// port-forward of its own — the node and the debugger, no kdap.
		for range controlRequests {
			start := time.Now()
			resp, err := control.Get("http://" + t.svc + t.control)
			if err != nil {
				b.Fatalf("%s: control request: %v", t.pod, err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			took["control "+as+" "+t.runtime] = append(took["control "+as+" "+t.runtime], time.Since(start))
		}
	}
	detach := func(t *target) {
		t.c.ExpectAnyResponse(b, t.c.Send("disconnect", godap.DisconnectArguments{}))
		t.c.Close()
	}

	b.ResetTimer()
	idle := attach(targets[0]) // a fresh Go pod, nothing else attached
	inspect(targets[0], "single")
	detach(targets[0])
	if n > 1 { // a Python session alone, for Python's reference
		attach(targets[1])
		inspect(targets[1], "single")
		detach(targets[1])
	}
	for _, t := range targets[:n] {
		attach(t)
	}
	for _, t := range targets[:n] {
		inspect(t, "many")
	}
	busy := attach(targets[n]) // a fresh Go pod, n sessions attached
	b.StopTimer()

	rss, hwm, err := procMemory(k.cmd.Process.Pid)
	if err != nil {
		b.Fatal(err)
	}
	fmt.Printf("many sessions (%d at once through one kdap dap, Go and Python alternating, %d requests counted each while stopped):\n", n, 3*(inspectRounds-1))
	fmt.Printf("  kdap's memory: %d MB resident, %d MB at most (goal ≤ 100 MB)\n", rss>>20, hwm>>20)
	fmt.Print(heapSummary(pprofAddr))
	for _, rt := range []string{"go", "python"} {
		single, many := took["single "+rt], took["many "+rt]
		if len(single) == 0 || len(many) == 0 {
			continue
		}
		s50, s99, m50, m99 := percentile(single, 50), percentile(single, 99), percentile(many, 50), percentile(many, 99)
		fmt.Printf("  %s requests: one session alone p50 %.2f ms p99 %.2f ms; with %d attached p50 %.2f ms p99 %.2f ms: p99 %.2f× (goal ≤ 1.2×)\n",
			rt, ms(s50), ms(s99), n, ms(m50), ms(m99), float64(m99)/float64(s99))
		b.ReportMetric(float64(m99)/float64(s99), rt+"-p99-ratio")
		if cs, cm := took["control single "+rt], took["control many "+rt]; len(cs) > 0 && len(cm) > 0 {
			fmt.Printf("    control, the app through a forward of its own while debugged (no kdap): p50 %.2f → %.2f ms, p99 %.2f → %.2f ms: p99 %.2f×\n",
				ms(percentile(cs, 50)), ms(percentile(cm, 50)), ms(percentile(cs, 99)), ms(percentile(cm, 99)), float64(percentile(cm, 99))/float64(percentile(cs, 99)))
		}
	}
	fmt.Printf("  attach → breakpoint verified (Go): on the idle kdap %s, with %d attached %s: %.2f× (goal ≤ 1.5×)\n",
		idle.Round(time.Millisecond), n, busy.Round(time.Millisecond), float64(busy)/float64(idle))
	agents := map[string][]int64{}
	for _, t := range targets {
		if mem := agentMemory(b, ns, t.pod); mem > 0 {
			agents[t.runtime] = append(agents[t.runtime], mem)
		}
	}
	for _, rt := range []string{"go", "python"} {
		if m := agents[rt]; len(m) > 0 {
			slices.Sort(m)
			fmt.Printf("  debugger container's memory, %s (agent and debugger, %d pods): median %d MB, most %d MB\n", rt, len(m), m[len(m)/2]>>20, m[len(m)-1]>>20)
		}
	}
	b.ReportMetric(float64(hwm>>20), "kdap-MB")
	b.ReportMetric(float64(busy)/float64(idle), "busy-attach-ratio")
	for _, t := range targets {
		detach(t)
	}
}

// procMemory is a process's resident memory now and at its peak (VmRSS,
// VmHWM), in bytes.
func procMemory(pid int) (rss, hwm int64, err error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb << 10
		case "VmHWM:":
			hwm = kb << 10
		}
	}
	return rss, hwm, nil
}

// agentMemory is the resident memory of every process in pod's running
// debugger container, found on this node by the container's ID in their
// cgroup (the test node is this machine); 0 if it has none.
func agentMemory(b testing.TB, ns, pod string) int64 {
	var id string
	for _, st := range getPod(b, ns, pod).Status.EphemeralContainerStatuses {
		if st.State.Running != nil {
			_, id, _ = strings.Cut(st.ContainerID, "://")
		}
	}
	if id == "" {
		return 0
	}
	cgroups, _ := filepath.Glob("/proc/[0-9]*/cgroup")
	var total int64
	for _, f := range cgroups {
		raw, err := os.ReadFile(f)
		if err != nil || !strings.Contains(string(raw), id) {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
		if rss, _, err := procMemory(pid); err == nil {
			total += rss
		}
	}
	return total
}

// freeLoopbackAddr is a loopback address with a port free a moment ago.
func freeLoopbackAddr(b testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// heapSummary is where kdap's memory goes, from its own profiles
// (KDAP_PPROF_LISTEN at addr): the Go runtime's accounting after a GC, and
// the functions whose allocations are live, most bytes first.
func heapSummary(addr string) string {
	var out strings.Builder
	get := func(path string) ([]byte, error) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		return io.ReadAll(resp.Body)
	}
	text, err := get("/debug/pprof/heap?debug=1&gc=1")
	if err != nil {
		return fmt.Sprintf("  kdap's heap profile: %v\n", err)
	}
	var stats []string
	for _, line := range strings.Split(string(text), "\n") {
		for _, name := range []string{"HeapInuse", "HeapIdle", "HeapReleased", "Sys", "NumGC"} {
			if v, ok := strings.CutPrefix(line, "# "+name+" = "); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				if name == "NumGC" {
					stats = append(stats, fmt.Sprintf("%s %d", name, n))
				} else {
					stats = append(stats, fmt.Sprintf("%s %.1f MB", name, float64(n)/(1<<20)))
				}
			}
		}
	}
	fmt.Fprintf(&out, "  kdap's Go runtime after a GC: %s\n", strings.Join(stats, ", "))
	raw, err := get("/debug/pprof/heap")
	if err != nil {
		return out.String()
	}
	prof, err := profile.ParseData(raw)
	if err != nil {
		return out.String() + fmt.Sprintf("  kdap's heap profile: %v\n", err)
	}
	inuse := len(prof.SampleType) - 1 // inuse_space
	flat, cum := map[string]int64{}, map[string]int64{}
	var total int64
	for _, s := range prof.Sample {
		v := s.Value[inuse]
		total += v
		seen := map[string]bool{}
		for i, loc := range s.Location {
			for _, line := range loc.Line {
				name := line.Function.Name
				if i == 0 {
					flat[name] += v
				}
				if !seen[name] {
					seen[name] = true
					cum[name] += v
				}
			}
		}
	}
	top := func(m map[string]int64, n int) string {
		names := slices.Collect(maps.Keys(m))
		slices.SortFunc(names, func(a, b string) int { return int(m[b] - m[a]) })
		var parts []string
		for _, name := range names[:min(n, len(names))] {
			parts = append(parts, fmt.Sprintf("    %6.1f MB %s", float64(m[name])/(1<<20), name))
		}
		return strings.Join(parts, "\n")
	}
	fmt.Fprintf(&out, "  kdap's live heap %.1f MB; allocated in (flat):\n%s\n", float64(total)/(1<<20), top(flat, 10))
	fmt.Fprintf(&out, "  under (cumulative):\n%s\n", top(cum, 25))
	return out.String()
}
