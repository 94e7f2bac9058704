package localend

import (
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestCheck(t *testing.T) {
	for addr, want := range map[string]string{
		"127.0.0.1:0":      "",
		"localhost:4711":   "",
		"[::1]:4711":       "",
		"unix:/tmp/k.sock": "",
		"unix:":            "give the socket's path",
		"0.0.0.0:4711":     "only on loopback",
		"10.0.0.1:4711":    "only on loopback",
		"4711":             "want HOST:PORT",
	} {
		err := Check("--listen", addr)
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("Check(%q) = %v, want %q", addr, err, want)
		}
	}
}

func TestUnixSocketIsThisUsersAlone(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kdap.sock")
	ln, err := Listen(UnixPrefix+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want 0600", fi.Mode().Perm())
	}
	if _, err := Listen(UnixPrefix+path, nil); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("a second kdap on a live socket: %v", err)
	}
	ln.Close()
	if _, err := os.Lstat(path); err == nil {
		t.Error("the socket is left behind after Close")
	}
	// One left by a kdap that was killed is replaced.
	stale, _ := net.Listen("unix", path)
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()
	ln, err = Listen(UnixPrefix+path, nil)
	if err != nil {
		t.Fatalf("a stale socket: %v", err)
	}
	ln.Close()
	os.WriteFile(path, nil, 0o600)
	if _, err := Listen(UnixPrefix+path, nil); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("a file in the way: %v", err)
	}
}

// TestTCPTakesOnlyThisUsersConnections connects once as this user and once
// as another (a child process given uid 65534, so it needs root).
func TestTCPTakesOnlyThisUsersConnections(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("only Linux tells a TCP connection's user")
	}
	if os.Getuid() != 0 {
		t.Skip("needs root to connect as another user")
	}
	refused := make(chan string, 2)
	ln, err := Listen("127.0.0.1:0", func(r string) { refused <- r })
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 2)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "welcome\n")
			accepted <- c
		}
	}()
	// Another user: its connection is closed without a byte.
	cmd := exec.Command(copyForAnyone(t, os.Args[0]), "-test.run=^TestHelperClient$")
	cmd.Env = append(os.Environ(), "KDAP_LOCALEND_CLIENT="+ln.Addr().String())
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("client as user 65534: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "read: \"\"") {
		t.Errorf("the other user's client read: %s", out)
	}
	select {
	case r := <-refused:
		if !strings.Contains(r, "user 65534") {
			t.Errorf("refusal: %s", r)
		}
	case <-time.After(5 * time.Second):
		t.Error("no refusal reported")
	}
	// This user.
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 8)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "welcome\n" {
		t.Errorf("this user's connection read %q, %v", b, err)
	}
	(<-accepted).Close()
}

// copyForAnyone copies the executable where any user may run it.
func copyForAnyone(t *testing.T, exe string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "kdap-localend-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "client")
	if err := os.WriteFile(out, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestHelperClient is the other user's client of
// TestTCPTakesOnlyThisUsersConnections.
func TestHelperClient(t *testing.T) {
	addr := os.Getenv("KDAP_LOCALEND_CLIENT")
	if addr == "" {
		t.Skip("a helper process")
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, _ := io.ReadAll(c)
	os.Stdout.WriteString("read: \"" + string(b) + "\"\n")
}
