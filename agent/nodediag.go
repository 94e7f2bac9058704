package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"time"

	"github.com/kdap/kdap/runtimes"
)

// Node.js diagnostics over the inspector (CDP): the main thread's
// JavaScript stack (kdap dump), a CPU profile (.cpuprofile, kdap profile)
// and a heap snapshot (.heapsnapshot, kdap heap). The inspector is opened
// for them as for a session, and closed after unless a session uses it.

// idleWait is how long a stack dump waits for JavaScript to run: a pause
// takes effect at the next JavaScript statement, and an idle event loop
// runs none.
const idleWait = time.Second

// Stack dump bounds with locals: frames read, and properties per scope.
const (
	maxLocalFrames = 16
	maxLocals      = 32
)

func (j *jsDebug) diagnose(ctx context.Context, kind string, params url.Values, logf func(string, ...any)) (*diagnostic, error) {
	switch kind {
	case runtimes.DiagnosticThreads:
		return j.stack(ctx, params.Get("locals") == "true", params.Get("format") == "json", logf)
	case runtimes.DiagnosticRecording:
		d, err := recordingDuration(params)
		if err != nil {
			return nil, err
		}
		return j.cpuProfile(ctx, d, logf)
	case runtimes.DiagnosticHeap:
		return j.heapSnapshot(ctx, logf)
	}
	return nil, noDiagnosticError(runtimes.Node, kind)
}

// withInspector runs fn on a CDP session of the target's inspector, opened
// as a debug session opens it and closed after the last user. busy, if
// set, refuses when a debug session is attached.
func (j *jsDebug) withInspector(ctx context.Context, logf func(string, ...any), busy error, fn func(c *cdp) error) error {
	j.inspMu.Lock()
	if busy != nil && j.sessions > 0 {
		j.inspMu.Unlock()
		return busy
	}
	if err := j.openLocked(logf); err != nil {
		j.inspMu.Unlock()
		return err
	}
	j.sessions++
	addr := j.insp.addr
	j.inspMu.Unlock()
	defer j.sessionEnded(logf)
	c, err := dialCDP(ctx, addr)
	if err != nil {
		return fmt.Errorf("the target's inspector at %s: %w", addr, err)
	}
	defer c.Close()
	return fn(c)
}

// jsFrame is one frame of a JavaScript stack dump.
type jsFrame struct {
	Function string     `json:"function"`
	URL      string     `json:"url"`
	Line     int        `json:"line"`   // 1-based
	Column   int        `json:"column"` // 1-based
	Locals   []localVar `json:"locals,omitempty"`
}

// stack pauses the main thread at its next JavaScript statement, reads the
// stack (with each frame's local scope if asked) and resumes it.
func (j *jsDebug) stack(ctx context.Context, locals, asJSON bool, logf func(string, ...any)) (*diagnostic, error) {
	var frames []jsFrame
	var pause time.Duration
	idle := false
	busy := errors.New("a debug session is attached to this Node.js process: its call stack is in the IDE (a dump would pause and resume it under the IDE)")
	err := j.withInspector(ctx, logf, busy, func(c *cdp) error {
		scripts := map[string]string{} // scriptId → url, from the scriptParsed events enable brings
		onScript := func(method string, params json.RawMessage) error {
			if method == "Debugger.scriptParsed" {
				var s struct{ ScriptID, URL string }
				if json.Unmarshal(params, &s) == nil {
					scripts[s.ScriptID] = s.URL
				}
			}
			return nil
		}
		if _, err := c.call(ctx, "Debugger.enable", nil, onScript); err != nil {
			return err
		}
		if _, err := c.call(ctx, "Debugger.pause", nil, onScript); err != nil {
			return err
		}
		waitCtx, cancel := context.WithTimeout(ctx, idleWait)
		ev, err := c.await(waitCtx, "Debugger.paused", onScript)
		cancel()
		if err != nil {
			if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
				idle = true // no JavaScript ran: leave the pause request with the debugger
				_, err = c.call(ctx, "Debugger.disable", nil, nil)
			}
			return err
		}
		start := time.Now()
		defer func() {
			c.call(context.Background(), "Debugger.resume", nil, nil)
			pause = time.Since(start)
			c.call(context.Background(), "Debugger.disable", nil, nil)
		}()
		var paused struct {
			CallFrames []struct {
				FunctionName string `json:"functionName"`
				URL          string `json:"url"`
				Location     struct {
					ScriptID string `json:"scriptId"`
					Line     int    `json:"lineNumber"`
					Column   int    `json:"columnNumber"`
				} `json:"location"`
				ScopeChain []struct {
					Type   string `json:"type"`
					Object struct {
						ObjectID string `json:"objectId"`
					} `json:"object"`
				} `json:"scopeChain"`
			} `json:"callFrames"`
		}
		if err := json.Unmarshal(ev, &paused); err != nil {
			return err
		}
		for i, f := range paused.CallFrames {
			jf := jsFrame{Function: f.FunctionName, URL: f.URL, Line: f.Location.Line + 1, Column: f.Location.Column + 1}
			if jf.URL == "" {
				jf.URL = scripts[f.Location.ScriptID] // V8 no longer fills in callFrame.url
			}
			if jf.Function == "" {
				jf.Function = "(anonymous)"
			}
			for _, s := range f.ScopeChain {
				if locals && i < maxLocalFrames && s.Type == "local" {
					jf.Locals = scopeLocals(ctx, c, s.Object.ObjectID)
				}
			}
			frames = append(frames, jf)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	t := j.target
	var b bytes.Buffer
	name, contentType := "stack.txt", "text/plain; charset=utf-8"
	switch {
	case asJSON:
		out, _ := json.MarshalIndent(map[string]any{"pid": t.PID, "version": t.Version, "idle": idle, "pause": pause.String(), "frames": frames}, "", "  ")
		b.Write(out)
		name, contentType = "stack.json", "application/json"
	case idle:
		fmt.Fprintf(&b, "# the main thread of pid %d (Node.js %s) ran no JavaScript for %s: it waits in the event loop, with nothing on its stack\n", t.PID, t.Version, idleWait)
	default:
		fmt.Fprintf(&b, "# JavaScript stack of the main thread of pid %d (Node.js %s); the target was stopped %s to read it\n", t.PID, t.Version, roundPause(pause))
		for _, f := range frames {
			fmt.Fprintf(&b, "    at %s (%s:%d:%d)\n", f.Function, f.URL, f.Line, f.Column)
			for _, v := range f.Locals {
				fmt.Fprintf(&b, "        %s = %s\n", v.Name, v.Value)
			}
		}
	}
	logf("stack dump of pid %d: %d frames (idle %v), target stopped %s", t.PID, len(frames), idle, pause)
	return &diagnostic{body: io.NopCloser(&b), size: int64(b.Len()), contentType: contentType, name: name, pause: pause}, nil
}

// scopeLocals reads a scope object's own properties, their top level.
func scopeLocals(ctx context.Context, c *cdp, objectID string) []localVar {
	res, err := c.call(ctx, "Runtime.getProperties", map[string]any{"objectId": objectID, "ownProperties": true}, nil)
	if err != nil {
		return []localVar{{Name: "(unreadable)", Value: err.Error()}}
	}
	var props struct {
		Result []struct {
			Name  string `json:"name"`
			Value struct {
				Type        string          `json:"type"`
				Value       json.RawMessage `json:"value"`
				Description string          `json:"description"`
			} `json:"value"`
		} `json:"result"`
	}
	json.Unmarshal(res, &props)
	var out []localVar
	for _, p := range props.Result {
		if len(out) == maxLocals {
			break
		}
		v := p.Value.Description
		if v == "" {
			v = string(p.Value.Value)
		}
		if v == "" {
			v = p.Value.Type
		}
		out = append(out, localVar{Name: p.Name, Type: p.Value.Type, Value: v})
	}
	return out
}

// cpuProfile runs V8's sampling profiler for d (or until the client
// leaves, which discards it) and returns the profile as a .cpuprofile, the
// format Chrome DevTools, VS Code and speedscope open.
func (j *jsDebug) cpuProfile(ctx context.Context, d time.Duration, logf func(string, ...any)) (*diagnostic, error) {
	var profile json.RawMessage
	err := j.withInspector(ctx, logf, nil, func(c *cdp) error {
		if _, err := c.call(ctx, "Profiler.enable", nil, nil); err != nil {
			return err
		}
		defer c.call(context.Background(), "Profiler.disable", nil, nil)
		if _, err := c.call(ctx, "Profiler.start", nil, nil); err != nil {
			return err
		}
		logf("CPU profile of pid %d for %s", j.target.PID, d)
		select {
		case <-time.After(d):
		case <-ctx.Done():
			c.call(context.Background(), "Profiler.stop", nil, nil)
			return ctx.Err()
		}
		res, err := c.call(ctx, "Profiler.stop", nil, nil)
		if err != nil {
			return err
		}
		var out struct {
			Profile json.RawMessage `json:"profile"`
		}
		if err := json.Unmarshal(res, &out); err != nil {
			return err
		}
		profile = out.Profile
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &diagnostic{body: io.NopCloser(bytes.NewReader(profile)), size: int64(len(profile)), contentType: "application/json", name: "profile.cpuprofile"}, nil
}

// heapSnapshot has V8 write a heap snapshot, streamed in chunks into a
// file of the agent's /tmp (unlinked once open); JavaScript waits
// meanwhile.
func (j *jsDebug) heapSnapshot(ctx context.Context, logf func(string, ...any)) (*diagnostic, error) {
	f, err := os.CreateTemp("", "kdap-*.heapsnapshot")
	if err != nil {
		return nil, fmt.Errorf("no room for the heap snapshot in the debugger container: %w", err)
	}
	os.Remove(f.Name())
	var pause time.Duration
	err = j.withInspector(ctx, logf, nil, func(c *cdp) error {
		start := time.Now()
		_, err := c.call(ctx, "HeapProfiler.takeHeapSnapshot", map[string]any{"reportProgress": false}, func(method string, params json.RawMessage) error {
			if method != "HeapProfiler.addHeapSnapshotChunk" {
				return nil
			}
			var chunk struct {
				Chunk string `json:"chunk"`
			}
			json.Unmarshal(params, &chunk)
			_, err := io.WriteString(f, chunk.Chunk)
			return err
		})
		pause = time.Since(start)
		return err
	})
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	fi, serr := f.Stat()
	if err == nil {
		err = serr
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("heap snapshot: %w", err)
	}
	logf("heap snapshot of pid %d: %d bytes; JavaScript waited %s", j.target.PID, fi.Size(), pause)
	return &diagnostic{body: f, size: fi.Size(), contentType: "application/json", name: "heap.heapsnapshot", pause: pause}, nil
}
