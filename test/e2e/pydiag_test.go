//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kdap/kdap/test/fixtures"
)

// TestPythonDumpProfileAndHeapWhileServing: while a request spins in the
// Python fixture's busy_work, kdap dump names it (text, and JSON with its
// locals); kdap profile samples it into collapsed stacks and a flame
// graph; kdap heap lists the server object among the tracked objects.
// debugpy is never injected, and the service answers after each.
func TestPythonDumpProfileAndHeapWhileServing(t *testing.T) {
	ns := newNamespace(t, nil)
	createPod(t, ns, "shop", fixtures.PyHTTPImage)
	logsOnFailure(t, ns, "shop")
	waitLog(t, ns, "shop", "serving on")
	svc := serviceForward(t, ns, "shop")
	dir := t.TempDir()

	busy := getAsync(fmt.Sprintf("http://%s/busy?ms=8000", svc))
	time.Sleep(300 * time.Millisecond)
	out := runKdap(t, "dump", "pod/shop", "-n", ns, "-o", filepath.Join(dir, "stacks.txt"))
	if !regexp.MustCompile(`thread dump of pid \d+ \(3\.\S+\) saved to .*; the target was stopped [\d.]+(µs|ms|s)\)`).MatchString(out) {
		t.Errorf("kdap dump said %q", out)
	}
	text, _ := os.ReadFile(filepath.Join(dir, "stacks.txt"))
	for _, want := range []string{"in busy_work", "in do_GET", "/app/server.py", "in serve_forever"} {
		if !strings.Contains(string(text), want) {
			t.Errorf("thread dump lacks %q:\n%s", want, text)
		}
	}
	runKdap(t, "dump", "pod/shop", "-n", ns, "--format", "json", "--locals", "-o", filepath.Join(dir, "stacks.json"))
	var dump struct {
		Threads []struct {
			Frames []struct {
				Function string
				Locals   []struct{ Name, Value string }
			}
		}
	}
	js, _ := os.ReadFile(filepath.Join(dir, "stacks.json"))
	if err := json.Unmarshal(js, &dump); err != nil {
		t.Fatalf("JSON dump: %v\n%.300s", err, js)
	}
	ms := ""
	for _, th := range dump.Threads {
		for _, f := range th.Frames {
			for _, v := range f.Locals {
				if f.Function == "busy_work" && v.Name == "ms" {
					ms = v.Value
				}
			}
		}
	}
	if ms != "8000" {
		t.Errorf("busy_work's ms in the JSON dump = %q, want 8000:\n%.2000s", ms, js)
	}

	// --redact: the default patterns and one of the user's mask values
	// in the dump before it is written.
	out = runKdap(t, "dump", "pod/shop", "-n", ns, "--locals", "--redact", "--redact-pattern", `\b8000\b`, "-o", filepath.Join(dir, "masked.txt"))
	masked, _ := os.ReadFile(filepath.Join(dir, "masked.txt"))
	if !strings.Contains(string(masked), "ms = [redacted]") || strings.Contains(string(masked), "ms = 8000") || !regexp.MustCompile(`; [1-9]\d* values masked\)`).MatchString(out) {
		t.Errorf("kdap dump --redact said %q and wrote:\n%s", out, masked)
	}

	// The service answers while the sampler runs.
	answered := make(chan time.Duration, 1)
	go func() {
		time.Sleep(1500 * time.Millisecond) // gdb starts the sampler ≈ 1 s in
		start := time.Now()
		for i := 0; i < 10; i++ {
			if r := <-getAsync(fmt.Sprintf("http://%s/quote?items=2", svc)); !strings.Contains(r, "total: 14") {
				t.Errorf("request %d while profiling: %q", i, r)
			}
		}
		answered <- time.Since(start)
	}()
	out = runKdap(t, "profile", "pod/shop", "-n", ns, "--duration", "3s")
	select {
	case d := <-answered:
		t.Logf("10 requests while profiling took %s", d)
	case <-time.After(20 * time.Second):
		t.Error("the service did not answer 10 requests while kdap profile sampled it")
	}
	file := savedFile(t, out, ".collapsed")
	collapsed, _ := os.ReadFile(file)
	if !strings.Contains(string(collapsed), "busy_work (server.py:") {
		t.Errorf("the profile has no busy_work stack:\n%.2000s", collapsed)
	}
	svg := regexp.MustCompile(`flame graph: (\S+\.svg)`).FindStringSubmatch(out)
	if svg == nil {
		t.Fatalf("kdap profile names no flame graph: %q", out)
	}
	checkFlameGraph(t, svg[1], "busy_work")
	expectReply(t, busy, "busy for 8000 ms", 20*time.Second)

	out = runKdap(t, "heap", "pod/shop", "-n", ns)
	heap, _ := os.ReadFile(savedFile(t, out, ".txt"))
	for _, want := range []string{"objects the garbage collector tracks", "http.server.ThreadingHTTPServer", "total"} {
		if !strings.Contains(string(heap), want) {
			t.Errorf("heap summary lacks %q:\n%.2000s", want, heap)
		}
	}
	expectReply(t, getAsync(fmt.Sprintf("http://%s/quote?items=2", svc)), "total: 14", 10*time.Second)
	if log := agentLog(t, ns, "shop"); strings.Contains(log, "debugpy injected") {
		t.Errorf("kdap's diagnostics injected debugpy:\n%s", log)
	}
}
