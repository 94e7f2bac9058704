// Package diagnose takes diagnostics of a running target through kdap's
// agent — for a JVM a thread dump, a heap dump or a JFR recording, with or
// without JDWP — and copies them to the user's machine, saying what is
// happening while the target works on it and how much has arrived.
package diagnose

import (
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
	"github.com/kdap/kdap/attach"
	"github.com/kdap/kdap/runtimes"
)

// Kind is a diagnostic the agent takes.
type Kind struct {
	Name    string // the agent's name for it (agentapi.DiagnosticsPath + Name)
	What    string // for messages: "heap dump"
	Ext     string // file extension of the result
	Waiting string // what the target does meanwhile, said while waiting
}

// The diagnostics kdap takes.
var (
	Threads   = Kind{Name: runtimes.DiagnosticThreads, What: "thread dump", Ext: ".txt", Waiting: "the target prints its threads' stacks (a pause of milliseconds)"}
	Heap      = Kind{Name: runtimes.DiagnosticHeap, What: "heap dump", Ext: ".hprof", Waiting: "the target writes its heap (it pauses meanwhile: ≈ 1 s per 300 MB of live objects)"}
	Recording = Kind{Name: runtimes.DiagnosticRecording, What: "JFR recording", Ext: ".jfr", Waiting: "the target records (JFR profile settings: ≈ 1–2% overhead)"}
)

// Request is one diagnostic to take.
type Request struct {
	Args   attach.Args
	Kind   Kind
	Params url.Values // the kind's parameters (duration=30s, all=true)
	Output string     // file to write; "" names one after the pod and time
}

// Result says what was written.
type Result struct {
	File    string
	Size    int64
	Target  *runtimes.Target
	Elapsed time.Duration
}

// Take prepares the agent (injecting it if need be), asks it for the
// diagnostic and writes it to a file, reporting progress to r. A partly
// written file is removed.
func Take(ctx context.Context, cfg attach.Config, req Request, r attach.Reporter) (*Result, error) {
	start := time.Now()
	if rts := runtimes.WithDiagnostic(req.Kind.Name); (req.Args.Runtime == "" || req.Args.Runtime == "auto") && len(rts) == 1 {
		req.Args.Runtime = rts[0].Name // the only runtime it is taken of
	}
	ep, err := attach.Prepare(ctx, cfg, req.Args, r)
	if err != nil {
		return nil, err
	}
	defer ep.Forward.Close()
	t := ep.Status.Target
	file := req.Output
	if file == "" {
		file = fmt.Sprintf("%s-%s-%s%s", ep.Pod, req.Kind.Name, time.Now().Format("20060102-150405"), req.Kind.Ext)
	}
	u := url.URL{Scheme: "http", Host: ep.Forward.Addr(), Path: agentapi.DiagnosticsPath + req.Kind.Name, RawQuery: req.Params.Encode()}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	r.Progress(fmt.Sprintf("taking a %s of pid %d in pod %s/%s: %s", req.Kind.What, t.PID, ep.Namespace, ep.Pod, req.Kind.Waiting))
	stopWaiting := reportWhile(r, req.Kind, 5*time.Second)
	resp, err := http.DefaultClient.Do(hreq)
	stopWaiting()
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("cancelled: the agent stops the %s", req.Kind.What)
		}
		return nil, fmt.Errorf("the debugger container did not answer: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return nil, errors.New(strings.TrimSpace(string(msg)))
	}
	n, err := save(file, resp.Body, resp.ContentLength, r)
	if err != nil {
		return nil, err
	}
	return &Result{File: file, Size: n, Target: t, Elapsed: time.Since(start)}, nil
}

// reportWhile says every interval how long the target has been at it,
// until the returned func is called.
func reportWhile(r attach.Reporter, k Kind, interval time.Duration) func() {
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
				r.Progress(fmt.Sprintf("still taking the %s (%s)", k.What, time.Since(start).Round(time.Second)))
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
