package agent

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kdap/kdap/runtimes"
)

// HotSpot's dynamic attach, as jcmd speaks it, from the agent: the JVM
// listens on the Unix socket /tmp/.java_pid<PID> in its own file system
// once it sees /tmp/.attach_pid<PID> and gets SIGQUIT. The agent reaches
// both through /proc/PID/root and, running as the JVM's user, passes its
// peer check; no jcmd is needed (and jcmd 17 cannot cross mount
// namespaces). Measured: 1–22 ms per command.

// hotspotWait bounds how long the JVM may take to open its attach socket.
const hotspotWait = 5 * time.Second

// sigquit is SIGQUIT's bit in /proc/PID/status's SigCgt mask.
const sigquit = 1 << (3 - 1)

// hotspotCommand runs one attach operation (e.g. "jcmd" with
// "VM.start_java_debugging", or "agentProperties") in the JVM pid and
// returns what it printed, waiting for it at most timeout. The response
// code is 0 even when a jcmd command failed: callers read the text.
func hotspotCommand(pid int, timeout time.Duration, op string, args ...string) (string, error) {
	sock := fmt.Sprintf("/proc/%d/root/tmp/.java_pid%d", pid, nsPID(pid))
	conn, err := net.DialTimeout("unix", sock, time.Second)
	if err != nil {
		if err := triggerAttach(pid, sock); err != nil {
			return "", err
		}
		if conn, err = net.DialTimeout("unix", sock, time.Second); err != nil {
			return "", fmt.Errorf("connecting to the JVM's attach socket: %w", err)
		}
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(timeout))
	var req strings.Builder
	req.WriteString("1\x00" + op + "\x00")
	for i := 0; i < 3; i++ {
		if i < len(args) {
			req.WriteString(args[i])
		}
		req.WriteByte(0)
	}
	if _, err := io.WriteString(conn, req.String()); err != nil {
		return "", fmt.Errorf("sending %s to the JVM: %w", op, err)
	}
	r := bufio.NewReader(conn)
	code, err := r.ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("the JVM did not answer %s: %w", op, err)
	}
	out, _ := io.ReadAll(io.LimitReader(r, 64<<20))
	if c, err := strconv.Atoi(strings.TrimSpace(code)); err != nil || c != 0 {
		return string(out), fmt.Errorf("the JVM refused %s (code %s): %s", op, strings.TrimSpace(code), strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// triggerAttach asks the JVM to open its attach socket: the trigger file,
// then SIGQUIT — only if the JVM handles SIGQUIT, or the signal would kill
// it (a JVM started with -Xrs does not).
func triggerAttach(pid int, sock string) error {
	mask, err := runtimes.SignalsCaught(pid)
	if err == nil && mask&sigquit == 0 {
		return errors.New("the JVM does not handle SIGQUIT (started with -Xrs?), so it cannot be attached to without a restart: sending the signal would end it")
	}
	trigger := fmt.Sprintf("/proc/%d/root/tmp/.attach_pid%d", pid, nsPID(pid))
	f, err := os.OpenFile(trigger, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("cannot create the JVM's attach trigger %s (%v): the JVM's /tmp must be writable by its user", strings.TrimPrefix(trigger, fmt.Sprintf("/proc/%d/root", pid)), err)
	}
	f.Close()
	defer os.Remove(trigger)
	if err := syscall.Kill(pid, syscall.SIGQUIT); err != nil {
		return fmt.Errorf("sending SIGQUIT to the JVM (pid %d): %w", pid, err)
	}
	for start := time.Now(); time.Since(start) < hotspotWait; time.Sleep(5 * time.Millisecond) {
		if _, err := os.Stat(sock); err == nil {
			return nil
		}
	}
	return fmt.Errorf("the JVM (pid %d) did not open its attach socket within %s: it may run with -XX:+DisableAttachMechanism, or with a /tmp it cannot write", pid, hotspotWait)
}

// nsPID is pid as the process knows itself (the last NSpid of
// /proc/PID/status): the number in its attach socket's name.
func nsPID(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return pid
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "NSpid:"); ok {
			f := strings.Fields(v)
			if n, err := strconv.Atoi(f[len(f)-1]); err == nil {
				return n
			}
		}
	}
	return pid
}
