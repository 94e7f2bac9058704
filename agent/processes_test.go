package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// fakeProc writes a /proc tree of its own: discovery is tested against
// what the test makes, never the machine's processes.
type fakeProc struct {
	t    *testing.T
	root string
}

func newFakeProc(t *testing.T) fakeProc { return fakeProc{t, t.TempDir()} }

// add writes pid's stat, cmdline, exe link and cgroup (cgroup v1 lines
// naming the container, as on the test node).
func (f fakeProc) add(pid, ppid int, exe, container string, args ...string) {
	dir := filepath.Join(f.root, fmt.Sprint(pid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		f.t.Fatal(err)
	}
	name := filepath.Base(exe)
	write := func(file, content string) {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(content), 0o644); err != nil {
			f.t.Fatal(err)
		}
	}
	write("stat", fmt.Sprintf("%d (%s) S %d %d %d 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 %d 1000 100", pid, name, ppid, pid, pid, 1000+pid))
	write("cmdline", strings.Join(args, "\x00")+"\x00")
	cg := ""
	for i, ctl := range []string{"pids", "memory", "cpu,cpuacct"} {
		cg += fmt.Sprintf("%d:%s:/kubepods/besteffort/pod1234/%s\n", 12-i, ctl, container)
	}
	write("cgroup", cg)
	if err := os.Symlink(exe, filepath.Join(dir, "exe")); err != nil {
		f.t.Fatal(err)
	}
}

const (
	appID     = "6f1c0ffee6f1c0ffee6f1c0ffee6f1c0ffee6f1c0ffee6f1c0ffee6f1c0ffee1"
	sidecarID = "0bad5eed0bad5eed0bad5eed0bad5eed0bad5eed0bad5eed0bad5eed0bad5eed"
	pauseID   = "a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5"
	agentID   = "9999999999999999999999999999999999999999999999999999999999999999"
)

func pids(procs []process) []int {
	var out []int
	for _, p := range procs {
		out = append(out, p.pid)
	}
	return out
}

// TestContainerProcessesInASharedPIDNamespace: with shareProcessNamespace
// the pod's pause process is PID 1 and a sidecar started first has the
// lowest pid after it; only the target container's processes are its, and
// the agent's own process tree is nobody's target.
func TestContainerProcessesInASharedPIDNamespace(t *testing.T) {
	f := newFakeProc(t)
	f.add(1, 0, "/pause", pauseID, "/pause")
	f.add(7, 0, "/usr/local/bin/envoy-ish", sidecarID, "/usr/local/bin/envoy-ish", "--config", "/etc/proxy")
	f.add(12, 0, "/app/service", appID, "/app/service", "--port", "8080")
	f.add(30, 0, "/kdap-agent", agentID, "/kdap-agent")
	f.add(31, 30, "/usr/bin/dlv", agentID, "dlv", "attach", "12")

	all, err := readProcesses(procfs(f.root), 31)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := pids(all), []int{1, 7, 12}; !reflect.DeepEqual(got, want) {
		t.Errorf("readProcesses without the agent's tree = %v, want %v", got, want)
	}
	procs, exact := containerProcesses(all, "containerd://"+appID)
	if got, want := pids(procs), []int{12}; !reflect.DeepEqual(got, want) || !exact {
		t.Errorf("containerProcesses(app) = %v exact %v, want %v exact", got, exact, want)
	}
	// An agent given no ID (an older kdap) falls back to everything but
	// pause: the sidecar is then among them, and exact says so.
	procs, exact = containerProcesses(all, "")
	if got, want := pids(procs), []int{7, 12}; !reflect.DeepEqual(got, want) || exact {
		t.Errorf("containerProcesses(no ID) = %v exact %v, want %v not exact", got, exact, want)
	}
	if procs, exact = containerProcesses(all, "containerd://deadbeef"); exact || len(procs) != 2 {
		t.Errorf("containerProcesses(unknown ID) = %v exact %v, want the fallback", pids(procs), exact)
	}
}

// TestWorkersAreDebuggedNotTheirMaster: gunicorn's arbiter (PID 1) forks
// its workers; a worker with debugpy injected has debugpy's adapter as a
// child, itself a Python process, which is no worker.
func TestWorkersAreDebuggedNotTheirMaster(t *testing.T) {
	f := newFakeProc(t)
	py := "/usr/bin/python3.11"
	f.add(1, 0, py, appID, py, "/usr/bin/gunicorn", "-w", "2", "app:app")
	f.add(8, 1, py, appID, py, "/usr/bin/gunicorn", "-w", "2", "app:app")
	f.add(9, 1, py, appID, py, "/usr/bin/gunicorn", "-w", "2", "app:app")
	f.add(20, 8, py, appID, py, "/tmp/kdap-debugpy-abc/debugpy/adapter", "--for-server", "40000", "--host", "127.0.0.1", "--port", "5678")
	all, err := readProcesses(procfs(f.root), 999)
	if err != nil {
		t.Fatal(err)
	}
	procs, _ := containerProcesses(all, appID)
	c := classify(procs, func(p process) bool { return p.exe == py && !isDebuggerHelper(p) }, true)
	want := map[int]string{1: roleMain, 8: roleWorker, 9: roleWorker, 20: roleOther}
	if !reflect.DeepEqual(c.role, want) {
		t.Errorf("roles = %v, want %v", c.role, want)
	}
	if got := c.defaults(); !reflect.DeepEqual(got, []int{8, 9}) {
		t.Errorf("defaults = %v, want the workers [8 9]", got)
	}

	// A shell wrapper around one program: the program, not the shell.
	g := newFakeProc(t)
	g.add(1, 0, "/bin/dash", appID, "/bin/sh", "-c", "exec-less python3 app.py")
	g.add(6, 1, py, appID, py, "app.py")
	all, _ = readProcesses(procfs(g.root), 999)
	procs, _ = containerProcesses(all, appID)
	c = classify(procs, func(p process) bool { return p.exe == py }, true)
	if got := c.defaults(); !reflect.DeepEqual(got, []int{6}) {
		t.Errorf("defaults under a shell = %v, want [6]", got)
	}

	// An exec probe's interpreter, entered from outside the container's
	// process tree (its parent is none of the container's), is no default.
	h := newFakeProc(t)
	h.add(1, 0, py, appID, py, "server.py")
	h.add(57, 0, py, appID, py, "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/')")
	all, _ = readProcesses(procfs(h.root), 999)
	procs, _ = containerProcesses(all, appID)
	c = classify(procs, func(p process) bool { return p.exe == py }, true)
	if c.role[57] != roleExec || !reflect.DeepEqual(c.defaults(), []int{1}) {
		t.Errorf("with an exec probe running: roles %v, defaults %v; want 57 exec and [1]", c.role, c.defaults())
	}
}

// TestFindAdapterIsTheTargetsOwn: debugpy's adapters daemonize, so both
// workers' adapters have gunicorn's master (PID 1) as their parent; each
// worker gets the adapter recorded for it, and the master, which has none,
// gets none — though it is their parent — while an adapter nobody recorded
// is the target's when it is its parent (a single-process container).
func TestFindAdapterIsTheTargetsOwn(t *testing.T) {
	f := newFakeProc(t)
	py := "/usr/bin/python3.11"
	f.add(1, 0, py, appID, py, "/usr/bin/gunicorn", "app:app")
	f.add(8, 1, py, appID, py, "/usr/bin/gunicorn", "app:app")
	f.add(9, 1, py, appID, py, "/usr/bin/gunicorn", "app:app")
	f.add(21, 1, py, appID, py, "/tmp/kdap-debugpy-abc/debugpy/adapter", "--for-server", "40001", "--host", "127.0.0.1", "--port", "5679")
	f.add(20, 1, py, appID, py, "/tmp/kdap-debugpy-abc/debugpy/adapter", "--for-server", "40000", "--host", "127.0.0.1", "--port", "5678")
	fs := procfs(f.root)
	for pid, port := range map[int]int{8: 5678, 9: 5679} {
		os.MkdirAll(filepath.Join(fs.path(pid, "root"), "tmp", "kdap-debugpy-abc"), 0o755)
		if err := recordAdapter(fs, pid, "/tmp/kdap-debugpy-abc", port); err != nil {
			t.Fatal(err)
		}
	}
	for target, port := range map[int]int{8: 5678, 9: 5679} {
		a, pid, ok := findAdapter(fs, target)
		if !ok || a.Port != port || pid != target+12 {
			t.Errorf("findAdapter(%d) = %+v pid %d %v, want port %d", target, a, pid, ok, port)
		}
	}
	os.MkdirAll(filepath.Join(fs.path(1, "root"), "tmp", "kdap-debugpy-abc"), 0o755)
	for _, pid := range []int{8, 9} { // the master sees the same /tmp
		b, _ := os.ReadFile(filepath.Join(fs.path(pid, "root"), "tmp", "kdap-debugpy-abc", adapterRecordPrefix+processKey(fs, pid)))
		os.WriteFile(filepath.Join(fs.path(1, "root"), "tmp", "kdap-debugpy-abc", adapterRecordPrefix+processKey(fs, pid)), b, 0o644)
	}
	if _, pid, ok := findAdapter(fs, 1); ok {
		t.Errorf("findAdapter(master) found pid %d's adapter, which was started for a worker", pid)
	}

	g := newFakeProc(t)
	g.add(1, 0, py, appID, py, "/app/server.py")
	g.add(6, 1, py, appID, py, "/tmp/kdap-debugpy-abc/debugpy/adapter", "--host", "127.0.0.1", "--port", "5678")
	if a, pid, ok := findAdapter(procfs(g.root), 1); !ok || pid != 6 || a.Port != 5678 {
		t.Errorf("findAdapter without records = %+v pid %d %v, want its child 6", a, pid, ok)
	}
}
