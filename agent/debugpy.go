package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/kdap/kdap/internal/lines"
	"github.com/kdap/kdap/runtimes"
)

// stagePrefix names the directory the agent copies debugpy to inside the
// target's file system; an adapter running from such a directory is kdap's.
const stagePrefix = "kdap-debugpy-"

// debugpy injects debugpy into the target interpreter once — a second
// injection would kill the first adapter — and hands clients the adapter
// that debugpy.listen() started as a child of the target. The adapter
// outlives the agent: the next agent finds it and reuses it.
type debugpy struct {
	pkg     string // directory holding the debugpy package in this image
	gdb     string
	pythons string // Python versions that debugpy supports
	target  *runtimes.Target
	log     io.Writer
	stage   string // the package's directory name inside the target: stagePrefix + content hash
	proc    procfs // where processes are looked up (hostProc)

	injectMu sync.Mutex // serialises injection; held while gdb runs
	mu       sync.Mutex // guards addr; never held for long
	addr     string     // the adapter's address once injected or found
}

func init() { register(runtimes.Python, newDebugpy) }

func newDebugpy(cfg Config, t *runtimes.Target) (debugger, error) {
	pkg := cfg.setting(runtimes.DebugpyDirEnv, runtimes.DebugpyDirDefault)
	gdb := cfg.setting(runtimes.GDBEnv, runtimes.GDBDefault)
	if err := requireFiles(runtimes.Python, gdb, filepath.Join(pkg, "debugpy")); err != nil {
		return nil, err
	}
	if err := gdbRestoresRegisters(gdb, hostProc); err != nil {
		return nil, err
	}
	sum, err := treeHash(pkg)
	if err != nil {
		return nil, fmt.Errorf("reading the image's debugpy at %s: %w", pkg, err)
	}
	t.Warnings = append(t.Warnings, adapterWarning)
	return &debugpy{pkg: pkg, gdb: gdb, pythons: cfg.setting(runtimes.DebugpyPythonsEnv, runtimes.DebugpyPythonsDefault),
		target: t, log: cfg.Log, stage: stagePrefix + sum, proc: hostProc}, nil
}

// adapterWarning says what debugpy leaves open: its adapter takes DAP
// clients on a loopback port with no credentials (its access tokens guard
// only the adapter's link to the debuggee), and cannot be stopped without
// ending debugging of the process until it restarts.
const adapterWarning = "debugpy's adapter listens on the pod's loopback from the first session until the process restarts, and takes any client: every process in the pod can connect to it and run code as the target's user"

func (d *debugpy) address() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.addr
}

func (d *debugpy) setAddress(addr string) {
	d.mu.Lock()
	d.addr = addr
	d.mu.Unlock()
}

func (d *debugpy) state() string {
	if d.address() == "" {
		return "not started"
	}
	return "running"
}

// connect dials the debugger's adapter, injecting it if needed. The adapter
// writes with Nagle on: the connection acknowledges every read at once.
func (d *debugpy) connect(ctx context.Context, logf func(string, ...any)) (net.Conn, error) {
	addr, err := d.ensure(ctx, logf)
	if err != nil {
		return nil, err
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return quickAckConn{c}, nil
}

// prepare injects debugpy into the target now (ensure).
func (d *debugpy) prepare(ctx context.Context, logf func(string, ...any)) error {
	_, err := d.ensure(ctx, logf)
	return err
}

// ensure returns the adapter's address: the one found running from an
// earlier injection, else a new injection's.
func (d *debugpy) ensure(ctx context.Context, logf func(string, ...any)) (string, error) {
	d.injectMu.Lock()
	defer d.injectMu.Unlock()
	pid := d.target.PID
	a, apid, found := findAdapter(d.proc, pid)
	if known := d.address(); known != "" {
		if found && net.JoinHostPort(a.Host, strconv.Itoa(a.Port)) == known {
			return known, nil
		}
		logf("debugpy's adapter at %s is gone; injecting again", known)
		d.setAddress("")
	}
	if found {
		addr := net.JoinHostPort(a.Host, strconv.Itoa(a.Port))
		if !strings.HasPrefix(path.Base(path.Dir(a.Package)), stagePrefix) {
			return "", fmt.Errorf("debugpy is already running in this pod (adapter pid %d at %s, from %s), started by the program or someone else: "+
				"kdap does not inject a second debugpy, which would end the first one's sessions; connect your IDE to that adapter, or restart the process and attach with kdap",
				apid, addr, a.Package)
		}
		d.setAddress(addr)
		logf("reusing debugpy's adapter (pid %d at %s) injected by an earlier kdap agent", apid, addr)
		return addr, nil
	}
	if ok, err := runtimes.PythonVersionSupported(d.target.Version, d.pythons); err == nil && !ok {
		return "", fmt.Errorf("the target runs Python %s, but this image's debugpy supports Python %s: build images/python with a debugpy that supports %s and set \"image\" to it",
			d.target.Version, d.pythons, d.target.Version)
	}
	start := time.Now()
	dir, err := d.copyToTarget()
	if err != nil {
		return "", err
	}
	port, err := freeLoopbackPort()
	if err != nil {
		return "", err
	}
	gdbStart := time.Now()
	out, gdbErr := runGDB(ctx, d.gdb, pid, runtimes.GDBInjectScript(dir, runtimes.DebugpyInjectCode(dir, port)), 60*time.Second)
	gdbTook := time.Since(gdbStart)
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fmt.Fprintln(d.log, "gdb:", line)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	errFile := fmt.Sprintf("/proc/%d/root%s", pid, runtimes.DebugpyErrorFile(dir, port))
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if listening(port) {
			break
		}
		if tb, err := os.ReadFile(errFile); err == nil && len(tb) > 0 {
			os.Remove(errFile)
			return "", fmt.Errorf("debugpy failed to start inside the target process:\n%s", lines.Last(string(tb), 6))
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return "", injectionError(pid, string(out), gdbErr)
		}
	}
	d.setAddress(addr)
	if err := recordAdapter(d.proc, pid, dir, port); err != nil {
		logf("recording debugpy's adapter: %v (a later agent finds it only if the target is its parent)", err)
	}
	logf("debugpy injected into pid %d in %s (copy %s, gdb %s); adapter at %s", pid, time.Since(start).Round(time.Millisecond),
		gdbStart.Sub(start).Round(time.Millisecond), gdbTook.Round(time.Millisecond), addr)
	return addr, nil
}

// gdbRestoresRegisters fails when gdb could not put the target's registers
// back after a call on this node's CPU: gdb before 14 cannot where the
// kernel enables AMX (flag amx_tile) — PTRACE_SETREGSET refuses its XSAVE
// area, which is shorter than the CPU's ("Couldn't write extended state
// status: Bad address") — and the target is left with half-restored
// registers (seen: it died). Nothing touches the target then.
func gdbRestoresRegisters(gdb string, fs procfs) error {
	cpu, err := os.ReadFile(filepath.Join(string(fs), "cpuinfo"))
	if err != nil || !strings.Contains(string(cpu), " amx_tile") {
		return nil
	}
	out, err := exec.Command(gdb, "--version").Output()
	if err != nil {
		return nil // not a gdb that runs: the injection says so
	}
	first, _, _ := strings.Cut(string(out), "\n")
	f := strings.Fields(first)
	var major int
	if len(f) > 0 {
		fmt.Sscanf(f[len(f)-1], "%d", &major)
	}
	if major != 0 && major < 14 {
		return fmt.Errorf("this debugger image's gdb (%s) cannot restore registers on this node's CPU, which has AMX: injecting debugpy with it would corrupt the target; use kdap's Python debugger image (gdb 14 or later), or build yours from images/python/Dockerfile", first)
	}
	return nil
}

// runGDB runs script in gdb attached to pid. gdb is never killed while it
// may be inside a call it made in the target — that would leave the target
// in the middle of the call, with gdb's return breakpoint ahead of it: the
// agent's shutdown (ctx) does not stop gdb, and after timeout gdb gets
// SIGINT, which stops the call and, with unwindonsignal (GDBInjectCommand),
// restores the target's state before gdb detaches.
func runGDB(ctx context.Context, gdb string, pid int, script string, timeout time.Duration) ([]byte, error) {
	f, err := os.CreateTemp("", "kdap-inject-*.gdb")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	f.WriteString(script)
	f.Close()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	args := runtimes.GDBInjectCommand(gdb, pid, f.Name())
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = time.Minute // only a gdb that ignores SIGINT that long is killed
	out, err := cmd.CombinedOutput()
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("%w (%s): %w", errGDBTimedOut, timeout, err)
	}
	return out, err
}

// errGDBTimedOut is a gdb whose call in the target did not return in time
// and was interrupted (the target's state restored).
var errGDBTimedOut = errors.New("gdb's call in the target did not return in time")

// injectionError explains a failed injection from gdb's output.
func injectionError(pid int, out string, gdbErr error) error {
	tail := lines.Last(out, 8)
	switch {
	case strings.Contains(out, "ptrace: Operation not permitted"):
		return fmt.Errorf("gdb may not attach to pid %d (ptrace: Operation not permitted): the debugger container needs the SYS_PTRACE capability (which PodSecurity baseline and restricted forbid), "+
			"or to run as the target's user on a node whose kernel.yama.ptrace_scope is 0; gdb said:\n%s", pid, tail)
	case strings.Contains(out, "kdap: dlopen attach.so failed"):
		return fmt.Errorf("the target process could not load debugpy's attach library (its C library must be glibc 2.34 or later, and /tmp must not be mounted noexec); gdb said:\n%s", tail)
	}
	if gdbErr != nil {
		return fmt.Errorf("gdb could not inject debugpy into pid %d (%v); gdb said:\n%s", pid, gdbErr, tail)
	}
	return fmt.Errorf("debugpy was injected into pid %d but its adapter did not start listening within 15s; gdb said:\n%s", pid, tail)
}

// release has nothing to do: when a client goes, by disconnect or a dropped
// connection, debugpy's adapter sends the debuggee "disconnect", which
// removes its breakpoints and resumes every thread.
func (d *debugpy) release(logf func(string, ...any)) error {
	logf("no client left: debugpy's adapter has released the target")
	return nil
}

// detach leaves the adapter in the target: debugpy cannot be unloaded, and
// a second injection would replace it, so the next agent reuses it.
func (d *debugpy) detach(logf func(string, ...any)) error {
	d.injectMu.Lock() // let an injection under way finish
	defer d.injectMu.Unlock()
	if addr := d.address(); addr != "" {
		logf("debugpy's adapter stays at %s for the next session; the target runs on", addr)
	}
	return nil
}

// copyToTarget makes the debugpy package importable inside the target at
// the path the injected code names: a copy under the target's /tmp (or
// /dev/shm, /var/tmp), owned by the target's user so it can write bytecode
// caches. A copy left by an earlier agent is reused.
func (d *debugpy) copyToTarget() (string, error) {
	var tried []string
	for _, parent := range []string{"/tmp", "/dev/shm", "/var/tmp"} {
		dir := path.Join(parent, d.stage)
		host := fmt.Sprintf("/proc/%d/root%s", d.target.PID, dir)
		if _, err := os.Stat(filepath.Join(host, ".complete")); err == nil {
			return dir, nil
		}
		if err := copyTree(d.pkg, host, d.target.UID, d.target.GID); err != nil {
			os.RemoveAll(host)
			tried = append(tried, fmt.Sprintf("%s: %v", parent, err))
			continue
		}
		if err := os.WriteFile(filepath.Join(host, ".complete"), nil, 0o644); err != nil {
			tried = append(tried, fmt.Sprintf("%s: %v", parent, err))
			continue
		}
		return dir, nil
	}
	return "", fmt.Errorf("cannot copy debugpy into the target's file system, where the interpreter must import it from (%s): give the target container a writable /tmp, e.g. an emptyDir volume",
		strings.Join(tried, "; "))
}

// copyTree copies the regular files and directories under src to dst,
// owned by uid:gid, with their modification times: the image's bytecode
// caches are valid for sources of the time they have there. Files are
// copied four at a time (≈ 300 of them, 6 MB, on the first attach's path).
func copyTree(src, dst string, uid, gid int) error {
	var g errgroup.Group
	g.SetLimit(4)
	err := filepath.WalkDir(src, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		info, err := os.Stat(p) // follows links: the image's tree may use them
		if err != nil {
			return err
		}
		if info.IsDir() { // before the files in it: the walk is in order
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
			return os.Lchown(target, uid, gid)
		}
		g.Go(func() error {
			if err := copyFile(p, target, info.Mode().Perm()); err != nil {
				return err
			}
			if err := os.Chtimes(target, info.ModTime(), info.ModTime()); err != nil {
				return err
			}
			return os.Lchown(target, uid, gid)
		})
		return nil
	})
	return errors.Join(err, g.Wait())
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// treeHash is a short hash of the file names and sizes under dir: a new
// image's debugpy gets a new directory in the target.
func treeHash(dir string) (string, error) {
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := os.Stat(p)
		if err != nil {
			return err
		}
		if info.IsDir() && e.Name() == "__pycache__" {
			return filepath.SkipDir
		}
		rel, _ := filepath.Rel(dir, p)
		fmt.Fprintf(h, "%s %d\n", rel, info.Size())
		return nil
	})
	return hex.EncodeToString(h.Sum(nil))[:12], err
}

// findAdapter looks for the debugpy adapter of the target process, never
// another process's: with several Python processes in the pod, an IDE must
// not be connected to the wrong one. debugpy's adapter daemonizes, so its
// parent is the PID namespace's first process, not the one that started
// it: the agent records every adapter it starts (recordAdapter) and takes
// the recorded one; an adapter nobody recorded (one the program started
// itself, or an older agent's) is the target's when the target is its
// parent.
func findAdapter(fs procfs, target int) (runtimes.DebugpyAdapter, int, bool) {
	owners := adapterOwners(fs, target)
	me := processKey(fs, target)
	entries, _ := os.ReadDir(string(fs))
	var found runtimes.DebugpyAdapter
	var foundPID int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		p, ok := readProcess(fs, pid)
		if !ok {
			continue
		}
		a, ok := runtimes.ParseDebugpyAdapter(p.cmdline)
		if !ok {
			continue
		}
		if a.Host == "" {
			a.Host = "127.0.0.1"
		}
		owner, recorded := owners[a.Port]
		switch {
		case recorded && owner == me:
			return a, pid, true
		case !recorded && (p.ppid == target || pid == target) && foundPID == 0: // (the target itself: someone's adapter, which kdap must not touch)
			found, foundPID = a, pid
		}
	}
	return found, foundPID, foundPID != 0
}

// adapterRecordName names the record of the adapter started for the
// process key (processKey) in a staging directory of the target's.
const adapterRecordPrefix = "adapter-"

// recordAdapter notes in the staging directory (the target's path dir)
// that the adapter on port is the target's.
func recordAdapter(fs procfs, target int, dir string, port int) error {
	host := filepath.Join(fs.path(target, "root"), dir, adapterRecordPrefix+processKey(fs, target))
	return os.WriteFile(host, []byte(strconv.Itoa(port)), 0o644)
}

// adapterOwners reads every adapter record in the target's staging
// directories: port → the process key it was started for.
func adapterOwners(fs procfs, target int) map[int]string {
	owners := map[int]string{}
	root := fs.path(target, "root")
	for _, parent := range []string{"tmp", "dev/shm", "var/tmp"} {
		records, _ := filepath.Glob(filepath.Join(root, parent, stagePrefix+"*", adapterRecordPrefix+"*"))
		for _, r := range records {
			b, err := os.ReadFile(r)
			if port, perr := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && perr == nil {
				owners[port] = strings.TrimPrefix(filepath.Base(r), adapterRecordPrefix)
			}
		}
	}
	return owners
}

// processKey tells pid from a later process with the same pid: "PID-START"
// with its start time from /proc/PID/stat.
func processKey(fs procfs, pid int) string {
	b, _ := os.ReadFile(fs.path(pid, "stat"))
	s := string(b)
	start := "0"
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		if f := strings.Fields(s[i+1:]); len(f) > 19 {
			start = f[19]
		}
	}
	return fmt.Sprintf("%d-%s", pid, start)
}

// listening reports whether a socket listens on 127.0.0.1:port in the
// pod's network namespace, from /proc/net/tcp (a test connection would
// start, and end, a session in debugpy's adapter).
func listening(port int) bool {
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return false
	}
	want := fmt.Sprintf("0100007F:%04X", port)
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 3 && f[1] == want && f[3] == "0A" { // 0A: LISTEN
			return true
		}
	}
	return false
}

// freeLoopbackPort asks the kernel for a free port on the pod's loopback.
func freeLoopbackPort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
