package agent

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kdap/kdap/agentapi"
	javaimage "github.com/kdap/kdap/images/java"
	"github.com/kdap/kdap/jdwp"
	"github.com/kdap/kdap/runtimes"
)

// jvm is the Java fixture running on this machine's JDK.
type jvm struct {
	pid  int
	http string
}

func (j jvm) get(t *testing.T, path string, within time.Duration) (string, error) {
	resp, err := (&http.Client{Timeout: within}).Get("http://" + j.http + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b)), nil
}

// startJVM compiles and runs the fixture with JAVA_TOOL_OPTIONS set to
// options ("" for none).
func startJVM(t *testing.T, options string) jvm {
	t.Helper()
	java := filepath.Join(javaimage.JDK, "bin")
	if _, err := os.Stat(filepath.Join(java, "javac")); err != nil {
		t.Skipf("no JDK 17 at %s (apt-get install openjdk-17-jdk-headless; make test installs it)", javaimage.JDK)
	}
	classes := t.TempDir()
	var srcs []string
	filepath.WalkDir("../test/fixtures/javahttp/src", func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".java") {
			srcs = append(srcs, p)
		}
		return err
	})
	if out, err := exec.Command(filepath.Join(java, "javac"), append([]string{"-g", "-d", classes}, srcs...)...).CombinedOutput(); err != nil {
		t.Fatalf("javac: %v\n%s", err, out)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(filepath.Join(java, "java"), "-cp", classes, "shop.Server")
	cmd.Env = append(os.Environ(), "PORT="+port, "JAVA_TOOL_OPTIONS="+options)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	sc := bufio.NewScanner(out)
	for sc.Scan() && !strings.Contains(sc.Text(), "javahttp listening") {
	}
	go io.Copy(io.Discard, out)
	return jvm{pid: cmd.Process.Pid, http: addr}
}

// runJavaAgent runs the agent on pid and returns its address and log.
// Raw JDWP sessions and diagnostics need no debug server: the machine's
// java and an empty class path stand in for the image's.
func runJavaAgent(t *testing.T, pid int) (string, *tailBuffer) {
	t.Helper()
	log := &tailBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	cp := t.TempDir()
	go func() {
		done <- Run(ctx, Config{Listen: "127.0.0.1:0", TTL: time.Hour, PID: pid, Runtime: runtimes.Java.Name, Log: io.MultiWriter(log, &testLog{t}),
			Getenv: func(k string) string {
				return map[string]string{runtimes.JavaBinEnv: filepath.Join(javaimage.JDK, "bin", "java"), runtimes.JavaDebugCPEnv: cp + "/*"}[k]
			},
			Ready: func(a string) { ready <- a }})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
	})
	select {
	case addr := <-ready:
		return addr, log
	case err := <-done:
		t.Fatal(err)
		return "", nil
	}
}

// jdwpClient connects to the agent's front door as IntelliJ would.
func jdwpClient(t *testing.T, agent string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", agent)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := jdwp.ShakeHands(conn); err != nil {
		t.Fatal(err)
	}
	return conn, bufio.NewReader(conn)
}

// call sends a command without payload and returns its reply's error code.
func call(t *testing.T, conn net.Conn, r *bufio.Reader, id uint32, set, cmd byte) uint16 {
	t.Helper()
	p := make([]byte, 11)
	binary.BigEndian.PutUint32(p[:4], 11)
	binary.BigEndian.PutUint32(p[4:8], id)
	p[9], p[10] = set, cmd
	conn.Write(p)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer conn.SetReadDeadline(time.Time{})
	for {
		reply, err := jdwp.ReadPacket(r)
		if err != nil {
			t.Fatalf("command %d/%d: %v", set, cmd, err)
		}
		if reply.IsReply() && reply.ID() == id {
			return binary.BigEndian.Uint16(reply[9:11])
		}
	}
}

const vmSuspend = 8 // VirtualMachine.Suspend

// TestJavaAgentHoldsJDWP: the agent starts JDWP (onjcmd=y) and holds the
// JVM's only JDWP connection — nothing else in the pod can connect to the
// JVM's port — relays one raw JDWP client at a time, refuses
// VirtualMachine.Exit, and lets the JVM go when its client falls silent
// after a heartbeat (≤ 2 s) or disposes of it.
func TestJavaAgentHoldsJDWP(t *testing.T) {
	target := startJVM(t, runtimes.JDWPFlag(17))
	agent, log := runJavaAgent(t, target.pid)

	conn, r := jdwpClient(t, agent)
	conn.Write(jdwp.Heartbeat(0))
	// While a debugger is connected, JDWP does not listen: the JVM's only
	// listening socket is the service's.
	_, httpPort, _ := net.SplitHostPort(target.http)
	for _, p := range listenersOf(target.pid) {
		if fmt.Sprint(p) != httpPort {
			t.Errorf("the JVM listens on port %d while the agent holds its JDWP connection", p)
		}
	}
	second, err := net.Dial("tcp", agent)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(second, jdwp.Handshake)
	second.SetReadDeadline(time.Now().Add(10 * time.Second))
	if line, _ := bufio.NewReader(second).ReadString('\n'); !strings.Contains(line, "another debugger session is attached") {
		t.Errorf("a second JDWP client got %q, want the agent's refusal", line)
	}
	second.Close()

	if code := call(t, conn, r, 1, jdwp.VirtualMachine, jdwp.Exit); code != jdwp.ErrNotImplemented {
		t.Errorf("VirtualMachine.Exit answered %d, want NOT_IMPLEMENTED", code)
	}
	if code := call(t, conn, r, 2, jdwp.VirtualMachine, vmSuspend); code != 0 {
		t.Fatalf("VirtualMachine.Suspend answered %d", code)
	}
	if got, err := target.get(t, "/quote?items=2", 300*time.Millisecond); err == nil {
		t.Fatalf("the suspended JVM answered %q", got)
	}
	start := time.Now() // silent from here on
	got, err := target.get(t, "/quote?items=2", 10*time.Second)
	if err != nil || got != "total: 14" {
		t.Fatalf("after the client fell silent: %q %v", got, err)
	}
	t.Logf("a silent client: the JVM ran on %s after its last packet", time.Since(start).Round(time.Millisecond))
	if d := time.Since(start); d > 2*time.Second+300*time.Millisecond {
		t.Errorf("the JVM ran on %s after the client fell silent, want ≤ 2s", d)
	}
	if !strings.Contains(log.String(), "sent nothing for 1.5s") {
		t.Errorf("the agent's log does not say why it ended the session:\n%s", log.String())
	}

	// The next client gets the JVM again; its Dispose lets the JVM go.
	conn, r = jdwpClient(t, agent)
	if code := call(t, conn, r, 1, jdwp.VirtualMachine, vmSuspend); code != 0 {
		t.Fatalf("VirtualMachine.Suspend answered %d", code)
	}
	if code := call(t, conn, r, 2, jdwp.VirtualMachine, jdwp.Dispose); code != 0 {
		t.Fatalf("VirtualMachine.Dispose answered %d", code)
	}
	if got, err := target.get(t, "/quote?items=1", 5*time.Second); err != nil || got != "total: 7" {
		t.Fatalf("after Dispose: %q %v", got, err)
	}
}

// TestJavaAgentWithoutJDWP: a JVM started without JDWP gets no session —
// the status says why and which flag to add — but its thread dump and
// heap dump are taken, and nothing stays in its /tmp.
func TestJavaAgentWithoutJDWP(t *testing.T) {
	target := startJVM(t, "")
	agent, _ := runJavaAgent(t, target.pid)
	resp, err := http.Get("http://" + agent + "/")
	if err != nil {
		t.Fatal(err)
	}
	var st agentapi.Status
	json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if st.Debugger != "unavailable" || !strings.Contains(st.Unavailable, "started without JDWP") || !strings.Contains(st.Unavailable, runtimes.JDWPFlag(17)) {
		t.Errorf("status: %+v", st)
	}
	conn, err := net.Dial("tcp", agent)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(conn, jdwp.Handshake)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if line, _ := bufio.NewReader(conn).ReadString('\n'); !strings.Contains(line, "started without JDWP") {
		t.Errorf("a JDWP client got %q", line)
	}
	conn.Close()

	for kind, want := range map[string]string{runtimes.DiagnosticThreads: "Full thread dump", runtimes.DiagnosticHeap: "JAVA PROFILE 1.0.2"} {
		resp, err := http.Get("http://" + agent + agentapi.DiagnosticsPath + kind)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(strings.TrimSpace(string(b))+"\n", "") || !strings.Contains(string(b[:min(len(b), 200)]), want) {
			t.Errorf("%s: %d %.200q", kind, resp.StatusCode, b)
		}
		if resp.ContentLength != int64(len(b)) {
			t.Errorf("%s: Content-Length %d, got %d bytes", kind, resp.ContentLength, len(b))
		}
	}
	if left, _ := filepath.Glob(fmt.Sprintf("/proc/%d/root/tmp/kdap-%d-*", target.pid, target.pid)); len(left) > 0 {
		t.Errorf("left in the JVM's /tmp: %v", left)
	}
	resp, err = http.Get("http://" + agent + agentapi.DiagnosticsPath + "recording?duration=1h")
	if err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 || !strings.Contains(string(b), "from 1s to 10m") {
			t.Errorf("a 1h recording: %d %s", resp.StatusCode, b)
		}
	}
}

func TestJDWPPortFromProperties(t *testing.T) {
	for props, want := range map[string]int{
		"java.vm.name=OpenJDK\nsun.jdwp.listenerAddress=dt_socket\\:41237\n":     41237,
		"sun.jdwp.listenerAddress=127.0.0.1\\:5005\n":                            5005,
		"sun.jdwp.listenerAddress=dt_socket:127.0.0.1:33123\r\nother=1\n":        33123,
		"java.vm.name=OpenJDK\n":                                                 0,
		"sun.jdwp.listenerAddress=dt_socket\\:0\n":                               0,
		"sun.jdwp.listenerAddress=\n":                                            0,
		"x.sun.jdwp.listenerAddress=dt_socket\\:1\nsun.jdwp.listenerAddress=2\n": 2,
	} {
		got, ok := jdwpPortFromProperties(props)
		if got != want || ok != (want != 0) {
			t.Errorf("%q: %d %v, want %d", props, got, ok, want)
		}
	}
}

// TestJavaAgentNamesWhoHoldsAFixedJDWPPort: with a fixed JDWP port that
// another process holds, the JVM says JDWP "started" though it could not
// bind; the agent finds the port is not the JVM's and says whose it is.
func TestJavaAgentNamesWhoHoldsAFixedJDWPPort(t *testing.T) {
	squatter, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer squatter.Close()
	port := squatter.Addr().(*net.TCPAddr).Port
	target := startJVM(t, fmt.Sprintf("-agentlib:jdwp=transport=dt_socket,server=y,suspend=n,address=127.0.0.1:%d,onjcmd=y", port))
	agent, _ := runJavaAgent(t, target.pid)
	conn, err := net.Dial("tcp", agent)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, jdwp.Handshake)
	conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	line, _ := bufio.NewReader(conn).ReadString('\n')
	for _, want := range []string{fmt.Sprintf("port %d", port), fmt.Sprintf("pid %d", os.Getpid()), "address=127.0.0.1:0"} {
		if !strings.Contains(line, want) {
			t.Errorf("the agent said %q; want it to name %q", line, want)
		}
	}
}

func TestJDWPWarnings(t *testing.T) {
	for address, exposed := range map[string]bool{"127.0.0.1:0": false, "localhost:5005": false, "5005": false, "[::1]:5005": false,
		"*:5005": true, "0.0.0.0:5005": true, "10.1.2.3:5005": true} {
		w := strings.Join(jdwpWarnings(runtimes.JDWP{Address: address}, 15*time.Minute), "\n")
		if got := strings.Contains(w, "beyond the pod's loopback"); got != exposed {
			t.Errorf("address=%s: warnings %q", address, w)
		}
		if !strings.Contains(w, "after it exits (idle 15m0s) any process in the pod may connect") {
			t.Errorf("address=%s: no word of what stays open: %q", address, w)
		}
	}
}
