//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	godap "github.com/google/go-dap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kdap/kdap/audit"
	"github.com/kdap/kdap/dap/daptest"
	"github.com/kdap/kdap/test/fixtures"
)

// TestGoDumpAndCoreWhileServing: while a request spins in the Go fixture's
// handler, kdap dump names that handler (text, and JSON with its locals)
// and says how long the target was stopped; kdap profile samples it into a
// pprof profile that go tool pprof reads and a flame graph; kdap core saves a core file
// and the executable that dlv core opens here, offline, showing the
// handler's goroutine and locals at the workspace's paths. The service
// answers throughout and after.
func TestGoDumpAndCoreWhileServing(t *testing.T) {
	ns := newNamespace(t, nil)
	createPod(t, ns, "shop", fixtures.GoHTTPImage)
	svc := serviceForward(t, ns, "shop")
	busy := getAsync(fmt.Sprintf("http://%s/busy?ms=20000", svc))
	time.Sleep(500 * time.Millisecond)
	dir := t.TempDir()

	out := runKdap(t, "dump", "pod/shop", "-n", ns, "-o", filepath.Join(dir, "goroutines.txt"))
	if !regexp.MustCompile(`goroutine dump of pid \d+ \(go1\.\S+\) saved to .*goroutines\.txt .*; the target was stopped [\d.]+(µs|ms|s)\)`).MatchString(out) {
		t.Errorf("kdap dump said %q", out)
	}
	text, _ := os.ReadFile(filepath.Join(dir, "goroutines.txt"))
	for _, want := range []string{"main.handleBusy(...)", "main.busyWork(...)", "test/fixtures/gohttp/main.go:", "the target was stopped"} {
		if !strings.Contains(string(text), want) {
			t.Errorf("goroutine dump lacks %q:\n%.1500s", want, text)
		}
	}
	expectAudit(t, ns, "shop", "goroutine dump of pid 1 (go, container app) by ")
	runKdap(t, "dump", "pod/shop", "-n", ns, "--format", "json", "--locals", "-o", filepath.Join(dir, "goroutines.json"))
	var dump struct {
		Goroutines []struct {
			Frames []struct {
				Function string
				Locals   []struct{ Name, Value string }
			}
		}
	}
	js, _ := os.ReadFile(filepath.Join(dir, "goroutines.json"))
	if err := json.Unmarshal(js, &dump); err != nil {
		t.Fatalf("JSON dump: %v\n%.300s", err, js)
	}
	if v := localIn(dump.Goroutines, "main.handleBusy", "ms"); v != "20000" {
		t.Errorf("main.handleBusy's ms in the JSON dump = %q, want 20000", v)
	}

	out = runKdap(t, "profile", "pod/shop", "-n", ns, "--duration", "2s")
	pprof := savedFile(t, out, ".pprof")
	top, err := exec.Command("go", "tool", "pprof", "-top", pprof).CombinedOutput()
	if err != nil || !strings.Contains(string(top), "main.busyWork") {
		t.Errorf("go tool pprof -top %s: %v\n%s", pprof, err, top)
	}
	svg := regexp.MustCompile(`flame graph: (\S+\.svg)`).FindStringSubmatch(out)
	if svg == nil {
		t.Fatalf("kdap profile names no flame graph: %q", out)
	}
	checkFlameGraph(t, svg[1], "main.busyWork")

	coreDir := filepath.Join(dir, "core")
	out = runKdap(t, "core", "pod/shop", "-n", ns, "-o", coreDir)
	if !strings.Contains(out, "dlv core "+filepath.Join(coreDir, "gohttp")+" "+filepath.Join(coreDir, "core")) {
		t.Errorf("kdap core said %q", out)
	}
	expectReply(t, getAsync(fmt.Sprintf("http://%s/hello?name=after", svc)), "hello, after", 10*time.Second)

	root, mainGo := localCopy(t)
	frame, locals := openCore(t, filepath.Join(coreDir, "gohttp"), filepath.Join(coreDir, "core"), root)
	if frame.Source == nil || frame.Source.Path != mainGo {
		t.Errorf("main.handleBusy's frame in the core is at %+v, want %s", frame.Source, mainGo)
	}
	if locals["ms"] != "20000" {
		t.Errorf("main.handleBusy's locals in the core: %v", locals)
	}
	expectReply(t, busy, "busy for 20000 ms", 30*time.Second)
}

func localIn(gs []struct {
	Frames []struct {
		Function string
		Locals   []struct{ Name, Value string }
	}
}, function, name string) string {
	for _, g := range gs {
		for _, f := range g.Frames {
			for _, v := range f.Locals {
				if f.Function == function && v.Name == name {
					return v.Value
				}
			}
		}
	}
	return ""
}

// openCore opens a core file with a dlv built here, through DAP as VS
// Code's Go extension does ("mode": "core", the workspace at root mapped to
// the build's paths), and returns main.handleBusy's frame and its locals.
func openCore(t *testing.T, exe, core, root string) (godap.StackFrame, map[string]string) {
	t.Helper()
	dlv := filepath.Join(t.TempDir(), "dlv")
	if out, err := exec.Command("go", "build", "-o", dlv, "github.com/go-delve/delve/cmd/dlv").CombinedOutput(); err != nil {
		t.Fatalf("building dlv: %v\n%s", err, out)
	}
	cmd := exec.Command(dlv, "dap", "--listen", "127.0.0.1:0")
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "DAP server listening at: "); ok {
				addr <- a
			}
		}
	}()
	var conn net.Conn
	select {
	case a := <-addr:
		var err error
		if conn, err = net.Dial("tcp", a); err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("dlv dap did not listen")
	}
	defer conn.Close()
	c := daptest.NewClient(conn)
	c.ExpectResponse(t, c.Send("initialize", godap.InitializeRequestArguments{AdapterID: "go", LinesStartAt1: true, ColumnsStartAt1: true, PathFormat: "path"}))
	launch := c.Send("launch", map[string]any{"mode": "core", "program": exe, "coreFilePath": core,
		"substitutePath": []map[string]string{{"from": root, "to": env.repo}}})
	c.ExpectEvent(t, "initialized")
	c.ExpectResponse(t, launch)
	c.ExpectResponse(t, c.Send("configurationDone", nil))
	var threads godap.ThreadsResponseBody
	daptest.Decode(t, c.ExpectResponse(t, c.Send("threads", nil)), &threads)
	for _, th := range threads.Threads {
		var st godap.StackTraceResponseBody
		daptest.Decode(t, c.ExpectResponse(t, c.Send("stackTrace", godap.StackTraceArguments{ThreadId: th.Id, Levels: 20})), &st)
		for _, f := range st.StackFrames {
			if f.Name != "main.handleBusy" {
				continue
			}
			var scopes godap.ScopesResponseBody
			daptest.Decode(t, c.ExpectResponse(t, c.Send("scopes", godap.ScopesArguments{FrameId: f.Id})), &scopes)
			locals := map[string]string{}
			for _, s := range scopes.Scopes {
				var vars godap.VariablesResponseBody
				daptest.Decode(t, c.ExpectResponse(t, c.Send("variables", godap.VariablesArguments{VariablesReference: s.VariablesReference})), &vars)
				for _, v := range vars.Variables {
					locals[v.Name] = v.Value
				}
			}
			return f, locals
		}
	}
	t.Fatalf("no goroutine of the core is in main.handleBusy (%d threads)", len(threads.Threads))
	return godap.StackFrame{}, nil
}

// expectAudit checks that a diagnostic of the pod left an Event on it
// (reason KdapDiagnostic, naming the admin user the tests run as) and a
// line in kdap's local log, both saying want.
func expectAudit(t *testing.T, ns, pod, want string) {
	t.Helper()
	p := getPod(t, ns, pod)
	evs, err := env.clientset.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{
		FieldSelector: "involvedObject.name=" + pod + ",involvedObject.uid=" + string(p.UID) + ",reason=" + audit.Reason})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, ev := range evs.Items {
		found = found || strings.Contains(ev.Message, want) && strings.Contains(ev.Message, "kdap-admin")
	}
	if !found {
		t.Errorf("no %s Event on %s/%s says %q by kdap-admin: %d events", audit.Reason, ns, pod, want, len(evs.Items))
	}
	log, _ := os.ReadFile(filepath.Join(env.state, "kdap", "kdap.log"))
	found = false
	for _, line := range strings.Split(string(log), "\n") {
		var rec audit.Record
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Namespace == ns && rec.Pod == pod && strings.Contains(rec.Message(), want) {
			found = true
		}
	}
	if !found {
		t.Errorf("kdap's local log has no line for %s/%s saying %q:\n%s", ns, pod, want, log)
	}
}
