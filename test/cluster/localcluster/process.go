package localcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kdap/kdap/internal/lines"
)

// start runs comp detached from the caller (its own session, output in its
// log file, pid in its pid file) and waits until comp.ready succeeds. If the
// process exits or is not ready within timeout, the error carries the last
// lines of its log and the log's path.
func (c *Cluster) start(ctx context.Context, comp component, timeout time.Duration) error {
	logPath := c.layout.logFile(comp.name)
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command(comp.bin, comp.args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = []string{componentEnv, "HOME=" + c.layout.dir}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", comp.name, err)
	}
	if err := os.WriteFile(c.layout.pidFile(comp.name), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	deadline := time.Now().Add(timeout)
	var lastErr error
	for {
		select {
		case err := <-exited:
			return fmt.Errorf("%s exited while starting (%v); last lines of %s:\n%s", comp.name, err, logPath, tail(logPath, 15))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		probeCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		lastErr = comp.ready(probeCtx)
		cancel()
		if lastErr == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s (%v); last lines of %s:\n%s", comp.name, timeout, lastErr, logPath, tail(logPath, 15))
		}
	}
}

// pidFromFile returns the live (not zombie) process a pid file names and
// its executable, or 0 and "".
func pidFromFile(pidFile string) (int, string) {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return 0, ""
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, ""
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return 0, ""
	}
	if state := procState(pid); state == "Z" || state == "" {
		return 0, ""
	}
	return pid, strings.TrimSuffix(exe, " (deleted)")
}

// runningPID returns the pid of comp if its pid file names a live process
// running exactly comp's binary, else 0.
func (c *Cluster) runningPID(comp component) int {
	pid, exe := pidFromFile(c.layout.pidFile(comp.name))
	want, _ := filepath.EvalSymlinks(comp.bin)
	if pid == 0 || (exe != comp.bin && exe != want) {
		return 0 // not running, or the pid was reused by something else
	}
	return pid
}

// stop ends comp: SIGTERM, then SIGKILL after grace. Only the pid recorded
// in comp's pid file is signalled, and only if that process's executable is
// named like the component (kube-apiserver, kubelet, …) — from this or an
// older build, so a version bump can still stop the old cluster.
func (c *Cluster) stop(comp component, grace time.Duration) {
	defer os.Remove(c.layout.pidFile(comp.name))
	pid := recordedPID(c.layout.pidFile(comp.name), comp.name)
	if pid == 0 {
		return
	}
	fmt.Fprintf(c.out, "cluster: stopping %s (pid %d)\n", comp.name, pid)
	terminate(pid, grace)
}

// recordedPID returns the live pid in pidFile if its executable is called
// exeName, else 0.
func recordedPID(pidFile, exeName string) int {
	pid, exe := pidFromFile(pidFile)
	if pid == 0 || filepath.Base(exe) != exeName {
		return 0
	}
	return pid
}

// terminate sends SIGTERM to pid and SIGKILL if it has not exited after grace.
func terminate(pid int, grace time.Duration) {
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return
	}
	if waitGone(pid, grace) {
		return
	}
	syscall.Kill(pid, syscall.SIGKILL)
	waitGone(pid, 5*time.Second)
}

// waitGone reports whether pid disappeared (or became a zombie) within d.
func waitGone(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if s := procState(pid); s == "" || s == "Z" {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// procState is the state letter from /proc/PID/stat, "" if pid is gone.
func procState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return ""
	}
	return string(b[i+2])
}

// tail returns the last n lines of a file, indented.
func tail(file string, n int) string {
	b, err := os.ReadFile(file)
	if err != nil {
		return "    (no log: " + err.Error() + ")"
	}
	return "    " + strings.ReplaceAll(lines.Last(string(b), n), "\n", "\n    ")
}

// errNotRoot is returned by every command that changes the machine.
var errNotRoot = errors.New("the test cluster must run as root (it starts containerd and the kubelet, mounts and makes network namespaces): run it with sudo")
