package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/kdap/kdap/agentapi"
	"github.com/kdap/kdap/runtimes"
)

// procfs is a /proc tree: "/proc" in the agent, a directory of their own
// in tests, so that discovery never sees the machine's processes there.
type procfs string

const hostProc procfs = "/proc"

func (p procfs) path(pid int, name string) string {
	return filepath.Join(string(p), strconv.Itoa(pid), name)
}

// process is one process the agent sees, as /proc tells it.
type process struct {
	pid, ppid int
	name      string   // the command name (/proc/PID/stat)
	exe       string   // /proc/PID/exe; "" when it may not be read
	denied    bool     // /proc/PID/exe was refused: another user's process
	cmdline   []string // its arguments
	cgroup    string   // /proc/PID/cgroup, which names its container
}

// command is the process's command line for messages.
func (p process) command() string {
	if len(p.cmdline) > 0 {
		return strings.Join(p.cmdline, " ")
	}
	return p.name
}

// readProcesses lists every process in fs but self and its ancestors (the
// agent's own process tree) and kernel threads, by pid.
func readProcesses(fs procfs, self int) ([]process, error) {
	entries, err := os.ReadDir(string(fs))
	if err != nil {
		return nil, err
	}
	byPID := map[int]process{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		p, ok := readProcess(fs, pid)
		if ok {
			byPID[pid] = p
		}
	}
	mine := map[int]bool{self: true}
	for p := self; p > 1; {
		parent, ok := byPID[p]
		if !ok {
			break
		}
		p = parent.ppid
		mine[p] = true
	}
	var out []process
	for pid, p := range byPID {
		if !mine[pid] {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].pid < out[j].pid })
	return out, nil
}

// readProcess reads pid's entry; ok is false for a kernel thread or a
// process that has just ended.
func readProcess(fs procfs, pid int) (process, bool) {
	stat, err := os.ReadFile(fs.path(pid, "stat"))
	if err != nil {
		return process{}, false
	}
	s := string(stat)
	i, j := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if i < 0 || j < i {
		return process{}, false
	}
	p := process{pid: pid, name: s[i+1 : j]}
	if f := strings.Fields(s[j+1:]); len(f) > 1 {
		p.ppid, _ = strconv.Atoi(f[1])
	}
	exe, err := os.Readlink(fs.path(pid, "exe"))
	switch {
	case errors.Is(err, os.ErrPermission):
		p.denied = true
	case err != nil:
		return process{}, false // a kernel thread (no exe) or gone
	default:
		p.exe = exe
	}
	if raw, err := os.ReadFile(fs.path(pid, "cmdline")); err == nil && len(raw) > 0 {
		p.cmdline = strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
	}
	cg, _ := os.ReadFile(fs.path(pid, "cgroup")) // readable by anyone
	p.cgroup = string(cg)
	return p, true
}

// containerProcesses are the processes of the target container: those
// whose cgroup names containerID (the container's ID from the pod's
// status, "containerd://ID" or the bare ID). Without an ID, or when no
// process names it (a runtime that names cgroups otherwise), they are the
// processes but the pod's pause process — which is only the target
// container's own when the pod does not share its PID namespace; exact says
// whether the ID told them apart.
func containerProcesses(all []process, containerID string) (procs []process, exact bool) {
	if _, id, ok := strings.Cut(containerID, "://"); ok {
		containerID = id
	}
	if containerID != "" {
		for _, p := range all {
			if strings.Contains(p.cgroup, containerID) {
				procs = append(procs, p)
			}
		}
		if len(procs) > 0 {
			return procs, true
		}
	}
	for _, p := range all {
		if p.name != "pause" && filepath.Base(p.exe) != "pause" {
			procs = append(procs, p)
		}
	}
	return procs, false
}

// Roles of a process among the target container's processes.
const (
	roleMain   = "main"   // a process of the runtime whose parent is not one
	roleWorker = "worker" // a process of the runtime started by another (gunicorn's, a Node.js cluster's workers)
	roleOther  = "other"  // not the runtime's (a shell, an init, a helper)
	roleExec   = "exec"   // entered into the container later (an exec probe, kubectl exec), not started by its entrypoint
)

// classified is a container's processes with the role of each, given
// which of them are the runtime's.
type classified struct {
	procs []process
	role  map[int]string
}

// classify gives each process its role; isRuntime says whether a process
// runs the runtime's program (helpers the debugger itself started, such as
// debugpy's adapter, are not).
//
// With the container's own processes (exact), one whose parent is none of
// them but the container's first such process — its entrypoint, the
// lowest pid — was entered from outside later: an exec probe or a kubectl
// exec, never a default (a liveness probe's python3 -c comes and goes
// every few seconds).
func classify(procs []process, isRuntime func(process) bool, exact bool) classified {
	c := classified{procs: procs, role: map[int]string{}}
	rt, in := map[int]bool{}, map[int]bool{}
	for _, p := range procs {
		rt[p.pid], in[p.pid] = isRuntime(p), true
	}
	entry := 0 // the entrypoint: the lowest pid whose parent is outside
	for _, p := range procs {
		if !in[p.ppid] && (entry == 0 || p.pid < entry) {
			entry = p.pid
		}
	}
	for _, p := range procs {
		switch {
		case !rt[p.pid]:
			c.role[p.pid] = roleOther
		case exact && !in[p.ppid] && p.pid != entry:
			c.role[p.pid] = roleExec
		case rt[p.ppid]:
			c.role[p.pid] = roleWorker
		default:
			c.role[p.pid] = roleMain
		}
	}
	return c
}

// defaults are the processes kdap debugs unless told otherwise: the
// workers when there are any — a master's own code serves no request —
// else every main process; lowest pid first.
func (c classified) defaults() []int {
	var workers, mains []int
	for _, p := range c.procs {
		switch c.role[p.pid] {
		case roleWorker:
			workers = append(workers, p.pid)
		case roleMain:
			mains = append(mains, p.pid)
		}
	}
	if len(workers) > 0 {
		return workers
	}
	return mains
}

// find returns the process pid.
func (c classified) find(pid int) (process, bool) {
	for _, p := range c.procs {
		if p.pid == pid {
			return p, true
		}
	}
	return process{}, false
}

// describe lists the processes for an error message.
func (c classified) describe() string {
	var s []string
	for _, p := range c.procs {
		cmd := p.command()
		if len(cmd) > 60 {
			cmd = cmd[:59] + "…"
		}
		s = append(s, fmt.Sprintf("%d (%s: %s)", p.pid, c.role[p.pid], cmd))
	}
	return strings.Join(s, ", ")
}

// processes finds the target container's processes, and which of them are
// the runtime's, for the agent's life.
type processes struct {
	fs          procfs
	containerID string
	self        int
	fixed       int // a pid the agent was given (-pid): the only process

	mu    sync.Mutex
	rt    *runtimes.Runtime     // once chosen
	known map[string]*inspected // by pid and exe: the runtime's verdict on each process seen
	last  classified            // the latest scan
	exact bool                  // the container's ID told its processes apart
}

// inspected is the runtime's verdict on a process.
type inspected struct {
	target *runtimes.Target
	err    error
}

// scan reads the target container's processes now.
func (ps *processes) scan() ([]process, bool, error) {
	if ps.fixed != 0 {
		p, ok := readProcess(ps.fs, ps.fixed)
		if !ok {
			return nil, false, fmt.Errorf("process %d: %w", ps.fixed, runtimes.ErrNoTarget)
		}
		return []process{p}, true, nil
	}
	all, err := readProcesses(ps.fs, ps.self)
	if err != nil {
		return nil, false, err
	}
	procs, exact := containerProcesses(all, ps.containerID)
	if len(procs) == 0 {
		return nil, exact, runtimes.ErrNoTarget
	}
	return procs, exact, nil
}

// first is the container's lowest pid (its PID 1 unless the pod shares
// its PID namespace): the process whose user the agent becomes.
func (ps *processes) first() (process, error) {
	procs, _, err := ps.scan()
	if err != nil {
		return process{}, err
	}
	return procs[0], nil
}

// choose settles the runtime — the one asked for, or with "auto" the
// first the container's processes are of, by pid — and returns the first
// process kdap debugs by default. When no process is of the runtime, the
// error is the runtime's own about the container's first process (it
// names the runtime to set).
func (ps *processes) choose(runtime string) (*runtimes.Runtime, *runtimes.Target, error) {
	procs, exact, err := ps.scan()
	if err != nil {
		return nil, nil, err
	}
	var rt *runtimes.Runtime
	if runtime != "" && runtime != "auto" {
		if rt = runtimes.Lookup(runtime); rt == nil {
			return nil, nil, fmt.Errorf("runtime %q is unknown: use one of auto, %s", runtime, strings.Join(runtimes.Names(), ", "))
		}
	} else {
		for _, p := range procs {
			if r, _, err := runtimes.Detect(p.pid); err == nil && !isDebuggerHelper(p) {
				rt = r
				break
			}
		}
	}
	if rt != nil {
		ps.mu.Lock()
		ps.rt = rt
		c := ps.classifyLocked(procs, exact)
		ps.last, ps.exact = c, exact
		ps.mu.Unlock()
		if d := c.defaults(); len(d) > 0 {
			t, err := ps.inspectOne(rt, d[0])
			return rt, t, err
		}
	}
	return inspect(procs[0].pid, runtime)
}

// inspectOne is the runtime's Target for pid, which must be one of its
// processes in the target container.
func (ps *processes) inspectOne(rt *runtimes.Runtime, pid int) (*runtimes.Target, error) {
	procs, exact, err := ps.scan()
	if err != nil {
		return nil, err
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	c := ps.classifyLocked(procs, exact)
	ps.last = c
	p, ok := c.find(pid)
	if !ok {
		return nil, fmt.Errorf("process %d is not one of the target container's (%s)", pid, c.describe())
	}
	if c.role[pid] == roleOther {
		v := ps.known[key(p)]
		why := "a helper of the debugger"
		if v != nil && v.err != nil {
			why = v.err.Error()
		}
		return nil, fmt.Errorf("process %d (%s) is not a %s program kdap can debug: %s", pid, p.command(), rt.Title, why)
	}
	return ps.known[key(p)].target, nil
}

// classifyLocked gives each process its role, inspecting those not seen
// before. mu is held.
func (ps *processes) classifyLocked(procs []process, exact bool) classified {
	if ps.known == nil {
		ps.known = map[string]*inspected{}
	}
	seen := map[string]bool{}
	for _, p := range procs {
		k := key(p)
		seen[k] = true
		if ps.known[k] == nil {
			t, err := ps.rt.Inspect(p.pid)
			ps.known[k] = &inspected{target: t, err: err}
		}
	}
	for k := range ps.known {
		if !seen[k] {
			delete(ps.known, k) // ended
		}
	}
	return classify(procs, func(p process) bool {
		v := ps.known[key(p)]
		return v.err == nil && !isDebuggerHelper(p)
	}, exact)
}

// key tells a process from a later one with the same pid.
func key(p process) string { return fmt.Sprintf("%d %s %s", p.pid, p.exe, p.command()) }

// isDebuggerHelper says p is a process a debugger started next to its
// target (debugpy's adapter), not the user's program.
func isDebuggerHelper(p process) bool {
	_, ok := runtimes.ParseDebugpyAdapter(p.cmdline)
	return ok
}

// processStatus lists the target container's processes for the status
// document, with the sessions on each.
func (a *agent) processStatus() ([]agentapi.Process, bool) {
	procs, exact, err := a.procs.scan()
	if err != nil {
		return nil, false
	}
	a.procs.mu.Lock()
	c := a.procs.classifyLocked(procs, exact)
	a.procs.last = c
	a.procs.mu.Unlock()
	def := map[int]bool{}
	for _, pid := range c.defaults() {
		def[pid] = true
	}
	if len(def) == 0 { // the target the agent settled on, which its debugger then explains (debugpy's own adapter, say)
		def[a.target.PID] = true
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]agentapi.Process, 0, len(c.procs))
	for _, p := range c.procs {
		st := agentapi.Process{PID: p.pid, PPID: p.ppid, Command: p.command(), Role: c.role[p.pid], Default: def[p.pid]}
		if d := a.debugged[p.pid]; d != nil {
			st.Sessions = d.active
		}
		out = append(out, st)
	}
	return out, exact
}
