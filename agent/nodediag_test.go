package agent

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kdap/kdap/agentapi"
	"github.com/kdap/kdap/runtimes"
)

// TestNodeDiagnostics: while the main thread spins in a request handler, a
// stack dump names it (text, and JSON with its locals); idle, the dump
// says so; a CPU profile and a heap snapshot parse as V8 writes them; the
// target serves throughout, and its inspector is closed afterwards.
func TestNodeDiagnostics(t *testing.T) {
	dist := nodeDist(t)
	node := filepath.Join(dist.Node, "bin", "node")
	httpAddr, pid, inspectPort := startNodeTarget(t, node)
	var log syncLog
	ctx, cancel := context.WithCancel(context.Background())
	agentAddr, done := startAgent(t, ctx, Config{TTL: time.Hour, PID: pid, Log: &log, Runtime: runtimes.Node.Name,
		Getenv: settings(runtimes.NodeBinEnv, node, runtimes.JSDebugEnv, filepath.Join(dist.JSDebug, "vsDebugServer.js"))})
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
		t.Logf("agent log:\n%s", log.String())
	}()

	idle, _ := diagnosticOf(t, agentAddr, "threads")
	if !strings.Contains(string(idle), "ran no JavaScript") {
		t.Errorf("idle stack dump: %s", idle)
	}
	busy := make(chan string, 1)
	go func() { busy <- get("http://" + httpAddr + "/busy?ms=4000") }()
	var text []byte
	var hdr http.Header
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(100 * time.Millisecond) { // until the request runs (a loaded machine is slow to start it)
		text, hdr = diagnosticOf(t, agentAddr, "threads")
		if strings.Contains(string(text), "at busyWork") || time.Now().After(deadline) {
			break
		}
	}
	for _, want := range []string{"at busyWork (file://", "server.js:", "the target was stopped"} {
		if !strings.Contains(string(text), want) {
			t.Errorf("stack dump lacks %q:\n%s", want, text)
		}
	}
	if p, err := time.ParseDuration(hdr.Get(agentapi.PauseHeader)); err != nil || p <= 0 {
		t.Errorf("%s: %q", agentapi.PauseHeader, hdr.Get(agentapi.PauseHeader))
	}
	js, _ := diagnosticOf(t, agentAddr, "threads?format=json&locals=true")
	var dump struct {
		Frames []jsFrame `json:"frames"`
	}
	if err := json.Unmarshal(js, &dump); err != nil || len(dump.Frames) == 0 || dump.Frames[0].Function != "busyWork" {
		t.Fatalf("JSON stack dump (%v): %s", err, js)
	}
	locals := map[string]string{}
	for _, v := range dump.Frames[0].Locals {
		locals[v.Name] = v.Value
	}
	if locals["ms"] != "4000" || locals["rounds"] == "" {
		t.Errorf("busyWork's locals: %v", locals)
	}
	if r := <-busy; !strings.Contains(r, "busy for 4000 ms") {
		t.Errorf("busy reply %q", r)
	}

	go func() { time.Sleep(200 * time.Millisecond); busy <- get("http://" + httpAddr + "/busy?ms=1500") }()
	prof, _ := diagnosticOf(t, agentAddr, "recording?duration=2s")
	var cpu struct {
		Nodes []struct {
			CallFrame struct {
				FunctionName string `json:"functionName"`
				URL          string `json:"url"`
			} `json:"callFrame"`
			HitCount int `json:"hitCount"`
		} `json:"nodes"`
		Samples []int `json:"samples"`
	}
	if err := json.Unmarshal(prof, &cpu); err != nil || len(cpu.Samples) == 0 {
		t.Fatalf("cpuprofile (%v): %.300s", err, prof)
	}
	// busyWork is hot by now: V8 inlines it into the handler, whose frame
	// the samples land in.
	hits := 0
	for _, n := range cpu.Nodes {
		if strings.HasSuffix(n.CallFrame.URL, "/server.js") {
			hits += n.HitCount
		}
	}
	if hits < len(cpu.Samples)/4 {
		t.Errorf("%d of %d samples in server.js, which was busy most of the time: %+v", hits, len(cpu.Samples), cpu.Nodes)
	}
	<-busy

	snap, hdr := diagnosticOf(t, agentAddr, "heap")
	var heap struct {
		Snapshot struct {
			NodeCount int `json:"node_count"`
		} `json:"snapshot"`
		Strings []string `json:"strings"`
	}
	if err := json.Unmarshal(snap, &heap); err != nil || heap.Snapshot.NodeCount == 0 {
		t.Fatalf("heapsnapshot (%v): %.300s", err, snap)
	}
	if !strings.Contains(hdr.Get("Content-Disposition"), ".heapsnapshot") {
		t.Errorf("Content-Disposition %q", hdr.Get("Content-Disposition"))
	}
	t.Logf("stack dump:\n%s", text)
	t.Logf("heap snapshot: %d nodes, %d bytes, JavaScript waited %s", heap.Snapshot.NodeCount, len(snap), hdr.Get(agentapi.PauseHeader))
	if r := get("http://" + httpAddr + "/quote?items=2"); !strings.Contains(r, "total: 14") {
		t.Errorf("after the diagnostics: %q", r)
	}
	waitInspectorClosed(t, inspectPort)
}
