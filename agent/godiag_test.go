package agent

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/pprof/profile"
	"github.com/kdap/kdap/agentapi"
)

// TestGoStacksAndCoreOfARunningTarget: a stack dump (text, JSON with
// locals) names the handler a request is in, and says how long the target
// was stopped; a core dump comes with the executable; the target serves on.
func TestGoStacksAndCoreOfARunningTarget(t *testing.T) {
	if testing.Short() {
		t.Skip("builds dlv and a target")
	}
	httpAddr, pid, dlv := startTarget(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var log syncLog
	// A lazy agent, as kdap injects for diagnostics: the first dump attaches Delve.
	agentAddr, done := startAgent(t, ctx, Config{TTL: time.Hour, Getenv: settings(DlvEnv, dlv), PID: pid, Log: &log, Lazy: true})
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
	}()
	busy := make(chan string, 1)
	go func() { busy <- get("http://" + httpAddr + "/busy?ms=3000") }()
	time.Sleep(300 * time.Millisecond)

	text, hdr := diagnosticOf(t, agentAddr, "threads")
	if !strings.Contains(log.String(), "dlv attached") || strings.Contains(log.String(), "stopped already") {
		t.Errorf("the first dump did not attach Delve itself, or took the attach's halt for a session's:\n%s", log.String())
	}
	for _, want := range []string{"goroutine 1 [", "main.main(...)", "main.busyWork(...)", "main.handleBusy(...)", "gohttp/main.go:"} {
		if !strings.Contains(string(text), want) {
			t.Errorf("stack dump does not have %q:\n%.2000s", want, text)
		}
	}
	if p, err := time.ParseDuration(hdr.Get(agentapi.PauseHeader)); err != nil || p <= 0 {
		t.Errorf("%s: %q (%v)", agentapi.PauseHeader, hdr.Get(agentapi.PauseHeader), err)
	}

	js, _ := diagnosticOf(t, agentAddr, "threads?format=json&locals=true")
	var dump struct {
		Goroutines []goroutineStack `json:"goroutines"`
	}
	if err := json.Unmarshal(js, &dump); err != nil {
		t.Fatalf("JSON stack dump: %v\n%.500s", err, js)
	}
	var found bool
	for _, g := range dump.Goroutines {
		for _, f := range g.Frames {
			if f.Function == "main.handleBusy" {
				for _, v := range f.Locals {
					found = found || (v.Name == "ms" && v.Value == "3000")
				}
			}
		}
	}
	if !found {
		t.Errorf("no main.handleBusy frame with ms = 3000 among %d goroutines:\n%.3000s", len(dump.Goroutines), js)
	}

	core, hdr := diagnosticOf(t, agentAddr, "core")
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(core))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("core tar: %v", err)
		}
		files[h.Name], _ = io.ReadAll(tr)
	}
	if f, err := elf.NewFile(bytes.NewReader(files["core"])); err != nil || f.Type != elf.ET_CORE {
		t.Errorf("core: %v (type %v)", err, f)
	}
	if f, err := elf.NewFile(bytes.NewReader(files["gohttp"])); err != nil || f.Type != elf.ET_EXEC {
		t.Errorf("executable gohttp: %v (files %v)", err, len(files))
	}
	if !strings.Contains(hdr.Get("Content-Disposition"), "core.tar") {
		t.Errorf("Content-Disposition %q", hdr.Get("Content-Disposition"))
	}
	select {
	case r := <-busy:
		if !strings.Contains(r, "busy for 3000 ms") {
			t.Errorf("busy reply %q", r)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the busy request never finished: the target was left halted")
	}
	if r := get("http://" + httpAddr + "/hello?name=after"); !strings.Contains(r, "hello, after") {
		t.Errorf("after the dumps: %q", r)
	}
	t.Logf("agent log:\n%s", log.String())
}

func diagnosticOf(t *testing.T, agent, kind string) ([]byte, http.Header) {
	t.Helper()
	resp, err := http.Get("http://" + agent + agentapi.DiagnosticsPath + kind)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %s %v: %s", kind, resp.Status, err, b)
	}
	return b, resp.Header
}

// TestGoHeapProfileFromTheProgramsOwnHandler: a program serving
// net/http/pprof (this test) gives its heap profile; without one, the
// error says what it would take.
func TestGoHeapProfileFromTheProgramsOwnHandler(t *testing.T) {
	if _, err := heapProfile(context.Background(), os.Getpid(), t.Logf); err == nil || !strings.Contains(err.Error(), `import _ "net/http/pprof"`) {
		t.Fatalf("without a handler: %v", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/heap", func(w http.ResponseWriter, r *http.Request) { pprof.Handler("heap").ServeHTTP(w, r) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	defer srv.Close()
	d, err := heapProfile(context.Background(), os.Getpid(), t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	p, err := profile.Parse(d.body)
	if err != nil || len(p.SampleType) == 0 || p.SampleType[0].Type != "alloc_objects" {
		t.Errorf("heap profile: %v %v", err, p)
	}
}
