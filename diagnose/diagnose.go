// Package diagnose takes diagnostics of a running target through kdap's
// agent — the ones its runtime declares (runtimes.Diagnostic): a Go
// program's goroutines or a core dump, a JVM's threads, heap or a JFR
// recording — and copies them to the user's machine, saying what is
// happening while the target works on it and how much has arrived.
package diagnose

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kdap/kdap/agentapi"
	"github.com/kdap/kdap/agentdoor"
	"github.com/kdap/kdap/attach"
	"github.com/kdap/kdap/audit"
	"github.com/kdap/kdap/flamegraph"
	"github.com/kdap/kdap/runtimes"
)

// Request is one diagnostic to take.
type Request struct {
	Args   attach.Args
	Kind   string     // runtimes.DiagnosticThreads, …
	Params url.Values // the kind's parameters (duration=30s, all=true, format=json)
	Output string     // file (a directory for a core dump) to write; "" names one after the pod and time
	Redact *Redactor  // masks values in a text dump before it is written (nil: none)
}

// Result says what was written.
type Result struct {
	What    string // "goroutine dump"
	File    string // the file, or for a core dump the directory
	Files   []string
	Size    int64
	Target  *runtimes.Target
	Pause   time.Duration // how long the target was stopped for it, if the agent measured it
	Elapsed time.Duration
	Masked  int // values Request.Redact masked
}

// Take prepares the agent (injecting it if need be), asks it for the
// diagnostic and writes it to a file — a core dump and its executable to a
// directory —, reporting progress to r. A partly written file is removed.
func Take(ctx context.Context, cfg attach.Config, req Request, r attach.Reporter) (*Result, error) {
	start := time.Now()
	if rts := runtimes.WithDiagnostic(req.Kind); (req.Args.Runtime == "" || req.Args.Runtime == "auto") && len(rts) == 1 {
		req.Args.Runtime = rts[0].Name // the only runtime it is taken of
	}
	cfg.Lazy = true // a new agent attaches no debugger for a diagnostic
	ep, err := attach.Prepare(ctx, cfg, req.Args, r)
	if err != nil {
		return nil, err
	}
	defer ep.Forward.Close()
	t := ep.Status.Target
	d, err := diagnosticOf(t, req.Kind)
	if err != nil {
		return nil, err
	}
	if req.Redact != nil && d.Ext != ".txt" {
		return nil, fmt.Errorf("--redact masks text dumps only; a %s (%s) holds the target's data in a form kdap cannot mask: leave out --redact, and keep the file where the data may go", d.What, d.Ext)
	}
	file := req.Output
	if file == "" {
		file = fmt.Sprintf("%s-%s-%s%s", ep.Pod, req.Kind, time.Now().Format("20060102-150405"), d.Ext)
	}
	if abs, err := filepath.Abs(file); err == nil {
		file = abs // said in full, so that a terminal or an IDE opens it
	}
	u := url.URL{Scheme: "http", Host: ep.Forward.Addr(), Path: agentapi.DiagnosticsPath + req.Kind, RawQuery: req.Params.Encode()}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	r.Progress(fmt.Sprintf("taking a %s of pid %d in pod %s/%s: %s", d.What, t.PID, ep.Namespace, ep.Pod, d.Cost))
	stopWaiting := reportWhile(r, d.What, time.Second)
	resp, err := agentdoor.HTTP.Do(hreq)
	stopWaiting()
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("cancelled: the agent stops the %s", d.What)
		}
		return nil, fmt.Errorf("the debugger container did not answer: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return nil, errors.New(strings.TrimSpace(string(msg)))
	}
	res := &Result{What: d.What, File: file, Target: t}
	res.Pause, _ = time.ParseDuration(resp.Header.Get(agentapi.PauseHeader))
	if resp.Header.Get("Content-Type") == "application/x-tar" {
		res.Files, res.Size, err = unpack(file, resp.Body, r)
	} else {
		res.Files = []string{file}
		var body io.Reader = resp.Body
		size := resp.ContentLength
		if req.Redact != nil {
			text, err := io.ReadAll(io.LimitReader(resp.Body, maxRedacted))
			if err != nil {
				return nil, fmt.Errorf("reading the %s: %w (the port-forward may have been lost: try again)", d.What, err)
			}
			text = req.Redact.Redact(text)
			body, size, res.Masked = bytes.NewReader(text), int64(len(text)), req.Redact.Masked
		}
		res.Size, err = save(file, body, size, r)
	}
	if err != nil {
		return nil, err
	}
	if read := flameReaders[d.Ext]; read != nil {
		svg, err := drawFlameGraph(file, read, fmt.Sprintf("%s of %s/%s, pid %d (%s %s)", d.What, ep.Namespace, ep.Pod, t.PID, runtimes.Lookup(t.Runtime).Title, t.Version))
		if err != nil {
			r.Output(fmt.Sprintf("kdap could not draw a flame graph (%v); the %s itself is saved", err, d.What))
		} else {
			res.Files = append(res.Files, svg)
		}
	}
	res.Elapsed = time.Since(start)
	record(ctx, ep, audit.Record{Time: start, Action: d.What, Namespace: ep.Namespace, Pod: ep.Pod, Container: ep.Container,
		Runtime: t.Runtime, PID: t.PID, Pause: res.Pause, Bytes: res.Size, File: res.File}, r)
	return res, nil
}

// record leaves the diagnostic in the cluster (an Event on the pod) and in
// kdap's local log, saying so when either cannot be written.
func record(ctx context.Context, ep *attach.Endpoint, rec audit.Record, r attach.Reporter) {
	rec.Who = ep.Who
	if err := audit.Event(ctx, ep.Client, ep.PodRef(), rec); err != nil {
		r.Output(fmt.Sprintf("kdap could not record this %s as an Event on the pod (%v): grant create on events in namespace %s to keep the team's record", rec.Action, err, ep.Namespace))
	}
	if err := audit.Log(rec); err != nil {
		r.Output(fmt.Sprintf("kdap could not write its local log %s: %v", audit.LogFile(), err))
	}
}

// maxRedacted bounds a text dump read whole to be masked.
const maxRedacted = 512 << 20

// flameReaders read the recordings kdap draws flame graphs of, by their
// file's extension.
var flameReaders = map[string]func(io.Reader) (*flamegraph.Stacks, error){
	".cpuprofile": flamegraph.FromCPUProfile,
	".collapsed":  flamegraph.FromCollapsed,
	".pprof":      flamegraph.FromPprof,
	".jfr":        flamegraph.FromJFR,
}

// drawFlameGraph writes the recording in file as a flame graph beside it
// (the same name, .svg), and returns the SVG's name.
func drawFlameGraph(file string, read func(io.Reader) (*flamegraph.Stacks, error), title string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	stacks, err := read(f)
	if err != nil {
		return "", fmt.Errorf("drawing a flame graph of %s: %w", file, err)
	}
	svg := strings.TrimSuffix(file, filepath.Ext(file)) + ".svg"
	out, err := os.Create(svg)
	if err != nil {
		return "", err
	}
	err = stacks.WriteSVG(out, title)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(svg)
		return "", err
	}
	return svg, nil
}

// diagnosticOf is t's runtime's diagnostic of kind, or an error naming
// those it has.
func diagnosticOf(t *runtimes.Target, kind string) (runtimes.Diagnostic, error) {
	rt := runtimes.Lookup(t.Runtime)
	if rt == nil {
		return runtimes.Diagnostic{}, fmt.Errorf("the agent reports a runtime kdap does not know (%q): use a kdap as new as its image", t.Runtime)
	}
	if d, ok := rt.Diagnostic(kind); ok {
		return d, nil
	}
	var have []string
	for _, d := range rt.Diagnostics {
		have = append(have, d.What)
	}
	if len(have) == 0 {
		return runtimes.Diagnostic{}, fmt.Errorf("kdap takes no diagnostics of %s programs yet (pid %d)", rt.Title, t.PID)
	}
	return runtimes.Diagnostic{}, fmt.Errorf("kdap takes no %s diagnostic of %s programs (pid %d); it takes: %s", kind, rt.Title, t.PID, strings.Join(have, ", "))
}

// reportWhile says every interval how long the target has been at it,
// until the returned func is called.
func reportWhile(r attach.Reporter, what string, interval time.Duration) func() {
	done := make(chan struct{})
	go func() {
		start := time.Now()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				r.Progress(fmt.Sprintf("still taking the %s (%s)", what, time.Since(start).Round(time.Second)))
			}
		}
	}()
	return func() { close(done) }
}

// save copies body (size bytes, -1 if unknown) to file, reporting progress
// at most every second; on failure the file is removed.
func save(file string, body io.Reader, size int64, r attach.Reporter) (int64, error) {
	if dir := filepath.Dir(file); dir != "." {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return 0, err
		}
	}
	f, err := os.OpenFile(file, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600) // dumps hold the target's data
	if err != nil {
		return 0, err
	}
	p := &progress{r: r, size: size, last: time.Now()}
	n, err := io.Copy(io.MultiWriter(f, p), body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && size >= 0 && n != size {
		err = fmt.Errorf("got %d of %d bytes", n, size)
	}
	if err != nil {
		os.Remove(file)
		return 0, fmt.Errorf("copying it to %s: %w (the port-forward may have been lost: try again)", file, err)
	}
	return n, nil
}

// progress reports bytes received.
type progress struct {
	r    attach.Reporter
	size int64
	n    int64
	last time.Time
}

func (p *progress) Write(b []byte) (int, error) {
	p.n += int64(len(b))
	if time.Since(p.last) >= time.Second {
		p.last = time.Now()
		if p.size > 0 {
			p.r.Progress(fmt.Sprintf("received %s of %s (%d%%)", Bytes(p.n), Bytes(p.size), p.n*100/p.size))
		} else {
			p.r.Progress(fmt.Sprintf("received %s", Bytes(p.n)))
		}
	}
	return len(b), nil
}

// Duration is d for messages: to the millisecond, or below one to the
// microsecond.
func Duration(d time.Duration) time.Duration {
	if d < time.Millisecond {
		return d.Round(time.Microsecond)
	}
	return d.Round(time.Millisecond)
}

// Bytes is n in B, KB or MB for messages.
func Bytes(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// unpack writes the tar on body into the new directory dir, reporting
// progress; on failure dir is removed.
func unpack(dir string, body io.Reader, r attach.Reporter) ([]string, int64, error) {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, 0, err
	}
	var files []string
	var total int64
	tr := tar.NewReader(body)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files, total, nil
		}
		if err == nil && (h.Typeflag != tar.TypeReg || h.Name != filepath.Base(h.Name) || h.Name == "." || h.Name == "..") {
			err = fmt.Errorf("unexpected entry %q", h.Name)
		}
		if err != nil {
			os.RemoveAll(dir)
			return nil, 0, fmt.Errorf("reading the agent's files: %w (the port-forward may have been lost: try again)", err)
		}
		file := filepath.Join(dir, h.Name)
		n, err := save(file, tr, h.Size, r)
		if err != nil {
			os.RemoveAll(dir)
			return nil, 0, err
		}
		if h.Mode&0o100 != 0 {
			os.Chmod(file, 0o700)
		}
		files = append(files, file)
		total += n
	}
}
