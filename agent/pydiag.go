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
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/kdap/kdap/runtimes"
)

// Python diagnostics, run inside the interpreter the way debugpy is
// injected (gdb and debugpy's attach library, which takes the GIL): every
// thread's stack (kdap dump), a sampling profile of every thread's stack
// for a while (kdap profile), and a summary of the objects the garbage
// collector tracks (kdap heap). The programs write into kdap's directory
// in the target's /tmp, which the agent reads through /proc/PID/root; the
// target is stopped only while gdb is attached (and for the heap summary
// while the interpreter counts its objects).

// pyStacksProgram writes every thread's stack, innermost frame last, as
// JSON; with locals, each frame's locals as reprs (bounded).
const pyStacksProgram = `import sys, threading, json, os
def _kdap_stacks(out, with_locals):
    names = {t.ident: t.name for t in threading.enumerate()}
    me = threading.get_ident()
    threads = []
    for tid, f in sys._current_frames().items():
        frames = []
        while f is not None:
            fr = {"function": f.f_code.co_name, "file": f.f_code.co_filename, "line": f.f_lineno}
            if with_locals:
                loc = []
                for k, v in list(f.f_locals.items())[:32]:
                    try:
                        r = repr(v)
                    except Exception as e:
                        r = "<repr failed: %s>" % e
                    loc.append({"name": k, "type": type(v).__name__, "value": r[:128]})
                fr["locals"] = loc
            frames.append(fr)
            f = f.f_back
        frames.reverse()
        if tid == me:  # this program's own frames, at the top
            frames = [x for x in frames if x["file"] != "<string>"]
        threads.append({"id": tid, "name": names.get(tid, "thread %d" % tid), "frames": frames})
    tmp = out + ".tmp"
    with open(tmp, "w") as fh:
        json.dump({"pid": os.getpid(), "version": sys.version.split()[0], "threads": threads}, fh)
    os.rename(tmp, out)
_kdap_stacks(@OUT@, @LOCALS@)
`

// pySamplerProgram starts a daemon thread that samples every other
// thread's stack every interval for duration, then writes the counts as
// collapsed stacks ("thread;outer (file.py:10);inner (file.py:3) 42");
// a stop file ends it early, writing nothing.
const pySamplerProgram = `import sys, threading, time, os, collections
def _kdap_sample(out, duration, interval):
    me = threading.get_ident()
    counts = collections.Counter()
    stop = out + ".stop"
    end = time.monotonic() + duration
    while time.monotonic() < end:
        if os.path.exists(stop):
            os.remove(stop)
            return
        names = {t.ident: t.name for t in threading.enumerate()}
        for tid, f in sys._current_frames().items():
            if tid == me:
                continue
            stack = []
            while f is not None:
                c = f.f_code
                stack.append("%s (%s:%d)" % (c.co_name, os.path.basename(c.co_filename), c.co_firstlineno))
                f = f.f_back
            stack.append(names.get(tid, "thread %d" % tid))
            counts[";".join(reversed(stack))] += 1
        time.sleep(interval)
    tmp = out + ".tmp"
    with open(tmp, "w") as fh:
        for k, n in counts.items():
            fh.write("%s %d\n" % (k, n))
    os.rename(tmp, out)
threading.Thread(target=_kdap_sample, args=(@OUT@, @DURATION@, @INTERVAL@), daemon=True, name="kdap-sampler").start()
`

// pyHeapProgram counts the objects the garbage collector tracks by type,
// with their shallow sizes, and tracemalloc's top lines if it traces.
const pyHeapProgram = `import gc, sys, os, collections
def _kdap_heap(out):
    counts = collections.Counter()
    sizes = collections.Counter()
    for o in gc.get_objects():
        t = type(o)
        name = "%s.%s" % (t.__module__, t.__qualname__)
        counts[name] += 1
        try:
            sizes[name] += sys.getsizeof(o)
        except Exception:
            pass
    lines = ["# objects the garbage collector tracks in pid %d (Python %s), by type: count, shallow bytes" % (os.getpid(), sys.version.split()[0]),
             "# (containers and instances; str, int and other leaf objects are not tracked, and are counted only inside their containers' sizes)",
             "%12s %14s  %s" % ("count", "bytes", "type")]
    for name, n in sorted(counts.items(), key=lambda kv: -sizes[kv[0]])[:200]:
        lines.append("%12d %14d  %s" % (n, sizes[name], name))
    lines.append("%12d %14d  total" % (sum(counts.values()), sum(sizes.values())))
    try:
        import tracemalloc
        if tracemalloc.is_tracing():
            lines.append("")
            lines.append("# tracemalloc: the 30 lines that allocated most of what is live")
            for s in tracemalloc.take_snapshot().statistics("lineno")[:30]:
                lines.append(str(s))
        else:
            lines.append("# tracemalloc is not tracing (PYTHONTRACEMALLOC=1 at start makes it do so): no allocation sites")
    except Exception as e:
        lines.append("# tracemalloc: %s" % e)
    tmp = out + ".tmp"
    with open(tmp, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    os.rename(tmp, out)
_kdap_heap(@OUT@)
`

// pyProgram fills in a program's @NAME@ placeholders (old, new pairs); the
// paths kdap puts there are ASCII, which Go and Python quote alike.
func pyProgram(program string, oldnew ...string) string {
	return strings.NewReplacer(oldnew...).Replace(program)
}

// samplingInterval is the Python sampler's interval (100 Hz).
const samplingInterval = 10 * time.Millisecond

func (d *debugpy) diagnose(ctx context.Context, kind string, params url.Values, logf func(string, ...any)) (*diagnostic, error) {
	switch kind {
	case runtimes.DiagnosticThreads:
		return d.stacks(ctx, params.Get("locals") == "true", params.Get("format") == "json", logf)
	case runtimes.DiagnosticRecording:
		dur, err := recordingDuration(params)
		if err != nil {
			return nil, err
		}
		return d.profile(ctx, dur, logf)
	case runtimes.DiagnosticHeap:
		return d.heap(ctx, logf)
	}
	return nil, noDiagnosticError(runtimes.Python, kind)
}

// runInTarget runs program in the target interpreter through gdb; name is
// the file (in kdap's directory in the target) the program is given to
// write, returned with its path as the agent sees it. It returns how long
// gdb held the target stopped (at most: from gdb's start to its exit).
func (d *debugpy) runInTarget(ctx context.Context, name string, program func(out string) string) (local string, stopped time.Duration, err error) {
	d.injectMu.Lock()
	defer d.injectMu.Unlock()
	dir, err := d.copyToTarget() // debugpy's attach library runs the program
	if err != nil {
		return "", 0, err
	}
	out := path.Join(dir, fmt.Sprintf("%s-%d", name, time.Now().UnixNano()))
	local = fmt.Sprintf("/proc/%d/root%s", d.target.PID, out)
	start := time.Now()
	script := runtimes.GDBInjectScript(dir, runtimes.PythonExec(program(out)))
	gdbOut, gdbErr := runGDB(ctx, d.gdb, d.target.PID, script, 15*time.Second)
	if errors.Is(gdbErr, errGDBTimedOut) {
		// Seen once in CI with a request spinning in the target: the call
		// never returned (gdb had stopped the thread it calls on where it
		// held a lock the call needs, it seems). gdb restored that thread;
		// a second try stops it somewhere else.
		for _, line := range strings.Split(strings.TrimSpace(string(gdbOut)), "\n") {
			fmt.Fprintln(d.log, "gdb:", line)
		}
		fmt.Fprintf(d.log, "kdap-agent: %v; trying once more\n", gdbErr)
		gdbOut, gdbErr = runGDB(ctx, d.gdb, d.target.PID, script, 60*time.Second)
	}
	stopped = time.Since(start)
	for _, line := range strings.Split(strings.TrimSpace(string(gdbOut)), "\n") {
		fmt.Fprintln(d.log, "gdb:", line)
	}
	if gdbErr != nil {
		return "", stopped, injectionError(d.target.PID, string(gdbOut), gdbErr)
	}
	return local, stopped, nil
}

// waitFile waits for the file a program in the target writes (renamed
// into place when complete), opens it and unlinks it.
func waitFile(ctx context.Context, file string, within time.Duration) (*os.File, error) {
	deadline := time.Now().Add(within)
	for {
		f, err := os.Open(file)
		if err == nil {
			os.Remove(file)
			return f, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the program kdap ran in the target wrote nothing in %s", within)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// pyThread is one thread of a Python stack dump.
type pyThread struct {
	ID     int64     `json:"id"`
	Name   string    `json:"name"`
	Frames []pyFrame `json:"frames"`
}

type pyFrame struct {
	Function string     `json:"function"`
	File     string     `json:"file"`
	Line     int        `json:"line"`
	Locals   []localVar `json:"locals,omitempty"`
}

func (d *debugpy) stacks(ctx context.Context, locals, asJSON bool, logf func(string, ...any)) (*diagnostic, error) {
	pyBool := map[bool]string{true: "True", false: "False"}
	local, stopped, err := d.runInTarget(ctx, "stacks", func(out string) string {
		return pyProgram(pyStacksProgram, "@OUT@", strconv.Quote(out), "@LOCALS@", pyBool[locals])
	})
	if err != nil {
		return nil, err
	}
	f, err := waitFile(ctx, local, 10*time.Second)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, 64<<20))
	if err != nil {
		return nil, err
	}
	var dump struct {
		PID     int        `json:"pid"`
		Version string     `json:"version"`
		Threads []pyThread `json:"threads"`
	}
	if err := json.Unmarshal(raw, &dump); err != nil {
		return nil, fmt.Errorf("the stack dump the target wrote: %w", err)
	}
	logf("stack dump of pid %d: %d threads; gdb held the target at most %s", d.target.PID, len(dump.Threads), stopped)
	if asJSON {
		out, _ := json.MarshalIndent(map[string]any{"pid": d.target.PID, "version": dump.Version, "pause": stopped.String(), "threads": dump.Threads}, "", "  ")
		return &diagnostic{body: io.NopCloser(bytes.NewReader(out)), size: int64(len(out)), contentType: "application/json", name: "stacks.json", pause: stopped}, nil
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "# threads of pid %d (Python %s), %d in all; the target was stopped at most %s to read them (while gdb was attached)\n\n", d.target.PID, dump.Version, len(dump.Threads), roundPause(stopped))
	for _, th := range dump.Threads {
		fmt.Fprintf(&b, "Thread %d (%s), most recent call last:\n", th.ID, th.Name)
		for _, fr := range th.Frames {
			fmt.Fprintf(&b, "  File %q, line %d, in %s\n", fr.File, fr.Line, fr.Function)
			for _, v := range fr.Locals {
				fmt.Fprintf(&b, "      %s = %s\n", v.Name, v.Value)
			}
		}
		b.WriteString("\n")
	}
	return &diagnostic{body: io.NopCloser(&b), size: int64(b.Len()), contentType: "text/plain; charset=utf-8", name: "stacks.txt", pause: stopped}, nil
}

// profile samples every thread's stack at 100 Hz for dur from a thread in
// the target, and returns the counts as collapsed stacks. If the client
// leaves, the sampler is told to stop and writes nothing.
func (d *debugpy) profile(ctx context.Context, dur time.Duration, logf func(string, ...any)) (*diagnostic, error) {
	local, stopped, err := d.runInTarget(ctx, "profile", func(out string) string {
		return pyProgram(pySamplerProgram, "@OUT@", strconv.Quote(out), "@DURATION@", fmt.Sprint(dur.Seconds()), "@INTERVAL@", fmt.Sprint(samplingInterval.Seconds()))
	})
	if err != nil {
		return nil, err
	}
	logf("sampling pid %d's threads at %s for %s (gdb held the target at most %s to start the sampler)", d.target.PID, samplingInterval, dur, stopped)
	f, err := waitFile(ctx, local, dur+30*time.Second)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			os.WriteFile(local+".stop", nil, 0o644)
		}
		return nil, err
	}
	defer f.Close()
	body, err := io.ReadAll(f)
	if err != nil {
		return nil, err
	}
	return &diagnostic{body: io.NopCloser(bytes.NewReader(body)), size: int64(len(body)), contentType: "text/plain; charset=utf-8", name: "profile.collapsed", pause: stopped}, nil
}

// heap writes the summary of the objects the garbage collector tracks.
func (d *debugpy) heap(ctx context.Context, logf func(string, ...any)) (*diagnostic, error) {
	local, stopped, err := d.runInTarget(ctx, "heap", func(out string) string { return pyProgram(pyHeapProgram, "@OUT@", strconv.Quote(out)) })
	if err != nil {
		return nil, err
	}
	f, err := waitFile(ctx, local, time.Minute)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	logf("heap summary of pid %d: %d bytes; gdb held the target at most %s", d.target.PID, fi.Size(), stopped)
	return &diagnostic{body: f, size: fi.Size(), contentType: "text/plain; charset=utf-8", name: "heap.txt", pause: stopped}, nil
}
