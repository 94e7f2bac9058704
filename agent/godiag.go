package agent

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/go-delve/delve/pkg/goversion"
	"github.com/go-delve/delve/service/api"
	"github.com/go-delve/delve/service/rpc2"

	"github.com/kdap/kdap/perfprofile"
	"github.com/kdap/kdap/runtimes"
)

// Go diagnostics: through Delve every goroutine's stack (kdap dump) and a
// core file of the process with its executable (kdap core), each halting
// the target only while it reads (a target a debug session holds stopped
// is read as it is and left stopped); and through perf events a CPU
// profile (kdap profile), which does not stop it.

// Stack dump bounds: frames per goroutine, and with locals, how much of
// each value is read — a value's top level only, which keeps the pause
// short (a whole *http.Request per frame took a 2-core machine 1.4 s).
const (
	maxStackDepth = 64
	maxGoroutines = 10000
)

var localsConfig = api.LoadConfig{FollowPointers: false, MaxVariableRecurse: 0, MaxStringLen: 64, MaxArrayValues: 8, MaxStructFields: 8}

func (d *delve) diagnose(ctx context.Context, kind string, params url.Values, logf func(string, ...any)) (*diagnostic, error) {
	switch kind {
	case runtimes.DiagnosticThreads:
		return d.stacks(ctx, params.Get("locals") == "true", params.Get("format") == "json", logf)
	case runtimes.DiagnosticCore:
		return d.core(ctx, logf)
	case runtimes.DiagnosticRecording:
		dur, err := recordingDuration(params)
		if err != nil {
			return nil, err
		}
		return d.cpuProfile(ctx, dur, logf)
	case runtimes.DiagnosticHeap:
		return heapProfile(ctx, d.pid, logf)
	}
	return nil, noDiagnosticError(runtimes.Go, kind)
}

// halted runs read with the target halted: halted first if it runs, and
// continued afterwards whatever read returns. It returns how long the
// target was stopped — with Delve's attach if Delve was attached for it —
// or 0 if a debug session already held it stopped.
func (d *delve) halted(ctx context.Context, logf func(string, ...any), read func(c *rpc2.RPCClient) error) (time.Duration, error) {
	attachStart := time.Now()
	addr, started, err := d.ensure(ctx, logf)
	if err != nil {
		return 0, err
	}
	var attach time.Duration
	if started {
		attach = time.Since(attachStart) // dlv attach stops the target while it loads
	}
	c, err := d.client()
	if err != nil || c == nil {
		return 0, fmt.Errorf("connecting to dlv: %v", err)
	}
	defer c.Disconnect(false)
	state, err := stateWithin(c, 5*time.Second)
	if err != nil {
		return 0, fmt.Errorf("%w; %s", err, d.targetState())
	}
	if !state.Running {
		logf("the target is stopped already (a debug session holds it): reading it as it is")
		return 0, read(c)
	}
	start := time.Now()
	if _, err := c.Halt(); err != nil {
		return 0, fmt.Errorf("halt: %w", err)
	}
	readErr := read(c)
	if err := resume(addr); err != nil { // returns once the target runs: the next one finds it so
		if errors.Is(err, errDelveSilent) && !tracingStopped(d.pid) {
			// Seen once after a core dump, when resume still asked on a
			// connection of its own (see resume): Delve did not answer, but
			// the target had been resumed. What was read stands.
			logf("%v after resuming the target; %s", err, d.targetState())
			return attach + time.Since(start), readErr
		}
		return attach + time.Since(start), fmt.Errorf("%w; %s", err, d.targetState())
	}
	pause := time.Since(start)
	if started {
		logf("the target was stopped %s while Delve attached, and %s for this", attach.Round(time.Millisecond), pause.Round(time.Millisecond))
	}
	return attach + pause, readErr
}

// errDelveSilent is a Delve that does not answer a state request.
var errDelveSilent = errors.New("Delve did not answer a state request within 5 s")

// stateWithin asks Delve for the target's state without waiting on it for
// more than within: a Delve that stopped answering must not hang a
// diagnostic. The caller closes c, which ends a call given up on.
func stateWithin(c *rpc2.RPCClient, within time.Duration) (*api.DebuggerState, error) {
	type answer struct {
		state *api.DebuggerState
		err   error
	}
	ch := make(chan answer, 1)
	go func() {
		st, err := c.GetStateNonBlocking()
		ch <- answer{st, err}
	}()
	select {
	case a := <-ch:
		return a.state, a.err
	case <-time.After(within):
		return nil, errDelveSilent
	}
}

// tracingStopped reports whether a thread of pid is stopped by its tracer
// (state "t" in /proc): the target frozen by Delve.
func tracingStopped(pid int) bool {
	stats, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if i := bytes.LastIndexByte(b, ')'); err == nil && i >= 0 && i+2 < len(b) && b[i+2] == 't' {
			return true
		}
	}
	return false
}

// targetState says, from /proc, whether the target runs, for errors.
func (d *delve) targetState() string {
	if tracingStopped(d.pid) {
		return fmt.Sprintf("pid %d is stopped by Delve", d.pid)
	}
	return fmt.Sprintf("pid %d runs on (none of its threads is stopped by a tracer)", d.pid)
}

// goroutineStack is one goroutine of a stack dump, as kdap dump --format
// json writes it.
type goroutineStack struct {
	ID         int64             `json:"id"`
	State      string            `json:"state"`
	ThreadID   int               `json:"threadId,omitempty"`
	Labels     map[string]string `json:"labels,omitempty"`
	CreatedBy  string            `json:"createdBy,omitempty"`
	Frames     []stackFrame      `json:"frames"`
	Unreadable string            `json:"unreadable,omitempty"`
}

type stackFrame struct {
	Function string     `json:"function"`
	File     string     `json:"file"`
	Line     int        `json:"line"`
	Locals   []localVar `json:"locals,omitempty"`
}

type localVar struct {
	Name  string `json:"name"`
	Type  string `json:"type"`
	Value string `json:"value"`
}

// stacks reads every goroutine's stack (with locals if asked) as text in
// the form of a Go traceback, or as JSON.
func (d *delve) stacks(ctx context.Context, locals, asJSON bool, logf func(string, ...any)) (*diagnostic, error) {
	var out []goroutineStack
	pause, err := d.halted(ctx, logf, func(c *rpc2.RPCClient) error {
		gs, _, err := c.ListGoroutines(0, maxGoroutines)
		if err != nil {
			return err
		}
		var cfg *api.LoadConfig
		if locals {
			cfg = &localsConfig
		}
		ver, _ := goversion.Parse(d.goVersion)
		for _, g := range gs {
			gst := goroutineStack{ID: g.ID, State: goroutineState(&ver, g), ThreadID: g.ThreadID, Labels: g.Labels, Unreadable: g.Unreadable}
			if g.GoStatementLoc.Function != nil {
				gst.CreatedBy = fmt.Sprintf("%s at %s:%d", g.GoStatementLoc.Function.Name(), g.GoStatementLoc.File, g.GoStatementLoc.Line)
			}
			frames, err := c.Stacktrace(g.ID, maxStackDepth, 0, 0, cfg)
			if err != nil {
				gst.Unreadable = err.Error()
			}
			for _, f := range frames {
				sf := stackFrame{File: f.File, Line: f.Line}
				if f.Function != nil {
					sf.Function = f.Function.Name()
				}
				for _, v := range append(f.Arguments, f.Locals...) {
					sf.Locals = append(sf.Locals, localVar{Name: v.Name, Type: v.Type, Value: v.SinglelineString()})
				}
				gst.Frames = append(gst.Frames, sf)
			}
			out = append(out, gst)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	logf("stack dump of pid %d: %d goroutines, target stopped %s", d.pid, len(out), pause)
	var body []byte
	name := "goroutines.txt"
	contentType := "text/plain; charset=utf-8"
	if asJSON {
		body, _ = json.MarshalIndent(map[string]any{"pid": d.pid, "goVersion": d.goVersion, "pause": pause.String(), "goroutines": out}, "", "  ")
		name, contentType = "goroutines.json", "application/json"
	} else {
		body = goTraceback(d.pid, d.goVersion, pause, out)
	}
	return &diagnostic{body: io.NopCloser(bytes.NewReader(body)), size: int64(len(body)), contentType: contentType, name: name, pause: pause}, nil
}

// goroutineState names a goroutine's state as Go's tracebacks do
// ("running", "IO wait", "chan receive").
func goroutineState(ver *goversion.GoVersion, g *api.Goroutine) string {
	switch g.Status {
	case 0:
		return "idle"
	case 1:
		return "runnable"
	case 2:
		return "running"
	case 3:
		return "syscall"
	case 4:
		if r := api.WaitReasonString(ver, g.WaitReason); r != "" {
			return r
		}
		return "waiting"
	case 6:
		return "dead"
	}
	return "status " + strconv.FormatUint(g.Status, 10)
}

// goTraceback writes the goroutines in the form of a Go traceback, each
// frame's locals indented under it.
func goTraceback(pid int, goVersion string, pause time.Duration, gs []goroutineStack) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# goroutines of pid %d (%s), %d in all; the target was stopped %s to read them\n\n", pid, goVersion, len(gs), roundPause(pause))
	for _, g := range gs {
		fmt.Fprintf(&b, "goroutine %d [%s]:\n", g.ID, g.State)
		if g.Unreadable != "" {
			fmt.Fprintf(&b, "\t(unreadable: %s)\n", g.Unreadable)
		}
		for _, f := range g.Frames {
			fmt.Fprintf(&b, "%s(...)\n\t%s:%d\n", f.Function, f.File, f.Line)
			for _, v := range f.Locals {
				fmt.Fprintf(&b, "\t\t%s %s = %s\n", v.Name, v.Type, v.Value)
			}
		}
		if g.CreatedBy != "" {
			fmt.Fprintf(&b, "created by %s\n", g.CreatedBy)
		}
		b.WriteString("\n")
	}
	return b.Bytes()
}

// core has Delve write a core file of the halted target into the agent's
// /tmp, then streams it with the target's executable as a tar: exe's base
// name and "core". The file is unlinked once open.
func (d *delve) core(ctx context.Context, logf func(string, ...any)) (*diagnostic, error) {
	exe, err := os.Open(fmt.Sprintf("/proc/%d/exe", d.pid))
	if err != nil {
		return nil, fmt.Errorf("reading the target's executable: %w", err)
	}
	exeName := filepath.Base(d.exe)
	dir, err := os.MkdirTemp("", "kdap-core-")
	if err != nil {
		exe.Close()
		return nil, fmt.Errorf("no room for the core file in the debugger container (%v): its image needs a writable /tmp", err)
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "core")
	logf("core dump of pid %d to %s (the target is stopped while Delve writes it)", d.pid, file)
	pause, err := d.halted(ctx, logf, func(c *rpc2.RPCClient) error {
		st, err := c.CoreDumpStart(file)
		for err == nil && st.Dumping && st.Err == "" {
			if ctx.Err() != nil {
				c.CoreDumpCancel()
				return fmt.Errorf("cancelled while the core dump was written (%d of %d bytes)", st.MemDone, st.MemTotal)
			}
			st = c.CoreDumpWait(1000)
		}
		if err == nil && st.Err != "" {
			err = fmt.Errorf("dlv: %s", st.Err)
		}
		return err
	})
	if err != nil {
		exe.Close()
		return nil, fmt.Errorf("core dump: %w", err)
	}
	core, err := os.Open(file)
	if err != nil {
		exe.Close()
		return nil, err
	}
	os.Remove(file)
	pr, pw := io.Pipe()
	go func() {
		defer exe.Close()
		defer core.Close()
		tw := tar.NewWriter(pw)
		err := tarFile(tw, exeName, 0o755, exe)
		if err == nil {
			err = tarFile(tw, "core", 0o600, core)
		}
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
	}()
	logf("core dump of pid %d written; target stopped %s", d.pid, pause)
	return &diagnostic{body: pr, size: -1, contentType: "application/x-tar", name: "core.tar", pause: pause}, nil
}

// tarFile writes f to tw as name.
func tarFile(tw *tar.Writer, name string, mode int64, f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: fi.Size(), ModTime: fi.ModTime()}); err != nil {
		return err
	}
	_, err = io.Copy(tw, f)
	return err
}

// cpuProfile samples the target's threads with perf events for dur and
// returns a pprof profile.
func (d *delve) cpuProfile(ctx context.Context, dur time.Duration, logf func(string, ...any)) (*diagnostic, error) {
	logf("CPU profile of pid %d for %s (perf events, 100 Hz per thread)", d.pid, dur)
	s, err := perfprofile.Record(ctx, d.pid, perfprofile.Options{Duration: dur})
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := s.WritePprof(&b); err != nil {
		return nil, fmt.Errorf("writing the profile: %w", err)
	}
	var n int64
	for _, st := range s.Stacks {
		n += st.Count
	}
	logf("CPU profile of pid %d: %d samples from %d threads, %d lost", d.pid, n, s.Threads, s.Lost)
	return &diagnostic{body: io.NopCloser(&b), size: int64(b.Len()), contentType: "application/vnd.google.protobuf+gzip", name: "cpu.pprof"}, nil
}

// heapProfile fetches the program's heap profile from the net/http/pprof
// handler it serves, if it serves one on any of its ports: Go keeps its
// heap profile in the program's own runtime, which only the program can
// write out.
func heapProfile(ctx context.Context, pid int, logf func(string, ...any)) (*diagnostic, error) {
	var ports []int
	for _, port := range listenersOf(pid) {
		ports = append(ports, port)
	}
	slices.Sort(ports)
	client := &http.Client{Timeout: 10 * time.Second}
	for _, port := range ports {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/heap", port), nil)
		resp, err := client.Do(req)
		if err != nil {
			continue
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
		resp.Body.Close()
		if err == nil && resp.StatusCode == http.StatusOK && bytes.HasPrefix(body, []byte{0x1f, 0x8b}) { // a gzipped profile
			logf("heap profile of pid %d from its net/http/pprof handler on port %d: %d bytes", pid, port, len(body))
			return &diagnostic{body: io.NopCloser(bytes.NewReader(body)), size: int64(len(body)), contentType: "application/vnd.google.protobuf+gzip", name: "heap.pprof"}, nil
		}
	}
	return nil, fmt.Errorf("the program (pid %d) serves no net/http/pprof heap profile on its ports %v: Go keeps its heap profile inside the program, which only the program can write out — "+
		"import _ \"net/http/pprof\" and serve http.DefaultServeMux on a localhost port (kdap finds it), or take kdap core and inspect the heap offline with dlv core", pid, ports)
}
