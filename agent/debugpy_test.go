package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kdap/kdap/runtimes"
)

// TestDebugpyRefusesAnUnsupportedPython: the version check comes before
// anything touches the target.
func TestDebugpyRefusesAnUnsupportedPython(t *testing.T) {
	pkg := t.TempDir()
	os.MkdirAll(filepath.Join(pkg, "debugpy"), 0o755)
	exe, _ := os.Executable() // stands in for gdb, which must not run
	d, err := newDebugpy(Config{Getenv: settings(runtimes.DebugpyDirEnv, pkg, runtimes.GDBEnv, exe, runtimes.DebugpyPythonsEnv, "3.7-3.11"), Log: io.Discard},
		&runtimes.Target{Runtime: "python", PID: os.Getpid(), Version: "3.12.1"})
	if err != nil {
		t.Fatal(err)
	}
	err = d.prepare(context.Background(), t.Logf)
	for _, want := range []string{"runs Python 3.12.1", "supports Python 3.7-3.11", "build images/python", `set "image"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("prepare = %v, want an error containing %q", err, want)
		}
	}
}

// TestInjectionErrorQuotesGdb: gdb's own words reach the user, with the
// fix for the failures kdap recognises.
func TestInjectionErrorQuotesGdb(t *testing.T) {
	for _, tc := range []struct {
		out  string
		err  error
		want []string
	}{
		{"Attaching to process 1\nptrace: Operation not permitted.\n", errors.New("exit status 1"),
			[]string{"SYS_PTRACE", "baseline", "ptrace: Operation not permitted."}},
		{"$1 = 0x0\nkdap: dlopen attach.so failed: /lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.34' not found\n", nil,
			[]string{"glibc 2.34 or later", "GLIBC_2.34' not found"}},
		{"No symbol table is loaded.\n", errors.New("exit status 1"),
			[]string{"gdb could not inject debugpy into pid 7", "No symbol table is loaded."}},
		{"$2 = 0\n", nil, []string{"adapter did not start listening", "$2 = 0"}},
	} {
		got := injectionError(7, tc.out, tc.err).Error()
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("injectionError(%q) = %q, want it to contain %q", tc.out, got, w)
			}
		}
	}
}

func TestCopyTreeAndTreeHash(t *testing.T) {
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "debugpy", "__pycache__"), 0o755)
	os.WriteFile(filepath.Join(src, "debugpy", "__init__.py"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(src, "debugpy", "__pycache__", "a.pyc"), []byte("c"), 0o644)
	os.Chtimes(filepath.Join(src, "debugpy", "__init__.py"), time.Unix(0, 0), time.Unix(0, 0)) // the image's time
	h1, err := treeHash(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "stage")
	if err := copyTree(src, dst, os.Getuid(), os.Getgid()); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "debugpy", "__init__.py")); err != nil || string(b) != "x" {
		t.Errorf("copied file: %q, %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "debugpy", "__pycache__", "a.pyc")); err != nil || string(b) != "c" {
		t.Errorf("the image's bytecode cache was not copied: %q, %v", b, err)
	}
	if st, err := os.Stat(filepath.Join(dst, "debugpy", "__init__.py")); err != nil || st.ModTime().Unix() != 0 {
		t.Errorf("the source's time was not kept (a pyc is valid only for its source's time): %v, %v", st.ModTime(), err)
	}
	os.WriteFile(filepath.Join(src, "debugpy", "new.py"), nil, 0o644)
	if h2, _ := treeHash(src); h2 == h1 {
		t.Error("a new file did not change the tree's hash")
	}
}

// TestGDBNeverLeavesTheTargetInACall runs real gdb on a real process: a call
// that outlasts the timeout is interrupted and unwound, and the agent's
// shutdown does not cut gdb off; the process runs on, untraced, both times.
func TestGDBNeverLeavesTheTargetInACall(t *testing.T) {
	gdb, err := exec.LookPath("gdb")
	if err != nil {
		t.Skip("gdb is not installed (make test installs it)")
	}
	skipIfGDBCannotWriteRegisters(t, gdb)
	target := exec.Command("sleep", "300")
	if err := target.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { target.Process.Kill(); target.Wait() })
	pid := target.Process.Pid
	waitExec(t, pid, "/sleep")

	start := time.Now()
	out, err := runGDB(context.Background(), gdb, pid, "call (unsigned int)sleep(600)\n", 2*time.Second)
	if !errors.Is(err, errGDBTimedOut) {
		t.Errorf("runGDB past its timeout = %v, want errGDBTimedOut (the diagnostics retry on it)", err)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("gdb returned %s after its 2s timeout", took)
	}
	if !strings.Contains(string(out), "GDB has restored the context to what it was before the call") {
		t.Errorf("gdb did not unwind the interrupted call; it said:\n%s", out)
	}
	checkRunning(t, pid)

	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the agent is shutting down: gdb still finishes its call
	out, err = runGDB(ctx, gdb, pid, "call (int)getpid()\n", time.Minute)
	if err != nil || !strings.Contains(string(out), fmt.Sprintf("= %d", pid)) {
		t.Errorf("gdb with a cancelled agent context: %v\n%s", err, out)
	}
	checkRunning(t, pid)
}

// skipIfGDBCannotWriteRegisters skips the test when this machine's gdb
// cannot restore a thread's registers after a call (gdb 13 on a CPU with
// AMX: "Couldn't write extended state status"); kdap's Python image carries
// a gdb that can (debian.Trixie), which the e2e tests use.
func skipIfGDBCannotWriteRegisters(t *testing.T, gdb string) {
	t.Helper()
	probe := exec.Command("sleep", "60")
	if err := probe.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { probe.Process.Kill(); probe.Wait() }()
	waitExec(t, probe.Process.Pid, "/sleep")
	out, _ := exec.Command(gdb, "--nx", "--batch", "-p", fmt.Sprint(probe.Process.Pid), "-ex", "call (int)getpid()").CombinedOutput()
	if strings.Contains(string(out), "Couldn't write extended state") {
		t.Skipf("this machine's gdb (%s) cannot write registers on this CPU (AMX), so no call it makes can be undone: kdap's Python image carries gdb %d+; gdb said:\n%s",
			gdb, 14, strings.TrimSpace(string(out)))
	}
}

// waitExec waits until pid runs an executable whose path ends in suffix.
func waitExec(t *testing.T, pid int, suffix string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); strings.HasSuffix(exe, suffix) {
			return
		}
	}
	t.Fatalf("pid %d did not exec %s", pid, suffix)
}

// checkRunning fails unless pid is alive, not stopped and not traced.
func checkRunning(t *testing.T, pid int) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("target gone: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && ((f[0] == "State:" && f[1] != "S" && f[1] != "R") || (f[0] == "TracerPid:" && f[1] != "0")) {
			t.Errorf("target after gdb: %s", line)
		}
	}
}

// TestOldGDBIsRefusedOnAnAMXCPU: a gdb older than 14 is never run against
// a target on a CPU with AMX; anywhere else, or with a newer gdb, it is.
func TestOldGDBIsRefusedOnAnAMXCPU(t *testing.T) {
	dir := t.TempDir()
	fakeGDB := func(version string) string {
		p := filepath.Join(dir, "gdb-"+version)
		if err := os.WriteFile(p, []byte("#!/bin/sh\necho 'GNU gdb (Debian "+version+"-3) "+version+"'\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cpu := func(flags string) procfs {
		d := t.TempDir()
		os.WriteFile(filepath.Join(d, "cpuinfo"), []byte("processor\t: 0\nflags\t\t: fpu sse2 avx512f"+flags+"\n"), 0o644)
		return procfs(d)
	}
	if err := gdbRestoresRegisters(fakeGDB("13.1"), cpu(" amx_bf16 amx_tile amx_int8")); err == nil || !strings.Contains(err.Error(), "corrupt the target") {
		t.Errorf("gdb 13.1 on AMX: %v, want a refusal", err)
	}
	if err := gdbRestoresRegisters(fakeGDB("16.3"), cpu(" amx_tile")); err != nil {
		t.Errorf("gdb 16.3 on AMX: %v", err)
	}
	if err := gdbRestoresRegisters(fakeGDB("13.1"), cpu("")); err != nil {
		t.Errorf("gdb 13.1 without AMX: %v", err)
	}
}
