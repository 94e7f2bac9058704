//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	godap "github.com/google/go-dap"
	corev1 "k8s.io/api/core/v1"

	"github.com/kdap/kdap/agentapi"
	"github.com/kdap/kdap/dap"
	"github.com/kdap/kdap/dap/daptest"
	javaimage "github.com/kdap/kdap/images/java"
	"github.com/kdap/kdap/jdwp"
	"github.com/kdap/kdap/runtimes"
	"github.com/kdap/kdap/test/fixtures"
)

// javaJVM is one of the Java fixture's JVMs, with the JDWP flag that makes
// it debuggable (what a platform team sets in JAVA_TOOL_OPTIONS).
type javaJVM struct {
	name  string
	image string
	major int
}

var (
	jdk17 = javaJVM{"OpenJDK 17 (onjcmd=y: JDWP starts when kdap asks)", fixtures.JavaHTTPImage, 17}
	jdk25 = javaJVM{"OpenJDK 25 (JDWP listens from the start)", fixtures.JavaHTTP25Image, 25}
)

// pod runs the service in pod name, with JDWP or without.
func (j javaJVM) pod(t *testing.T, ns, name string, withJDWP bool) string {
	t.Helper()
	createPodWith(t, ns, name, j.image, func(p *corev1.Pod) {
		if withJDWP {
			p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "JAVA_TOOL_OPTIONS", Value: runtimes.JDWPFlag(j.major)}}
		}
	})
	logsOnFailure(t, ns, name)
	waitLog(t, ns, name, "javahttp listening") // Running comes before the JVM serves
	return podForward(t, ns, name, fixtures.JavaHTTPPort)
}

// javaSources is the Java service's workspace: its sources under
// src/main/java, as a Maven or Gradle project holds them.
type javaSources struct {
	root, server, pricing string
}

func javaLocalCopy(t testing.TB) javaSources {
	t.Helper()
	root := filepath.Join(t.TempDir(), "workspace", "javahttp")
	src := filepath.Join(env.repo, "test", "fixtures", "javahttp")
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		os.MkdirAll(filepath.Dir(filepath.Join(root, rel)), 0o755)
		return os.WriteFile(filepath.Join(root, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	java := filepath.Join(root, "src", "main", "java", "shop")
	return javaSources{root: root, server: filepath.Join(java, "Server.java"), pricing: filepath.Join(java, "pricing", "Pricing.java")}
}

// Lines of the Java fixture the tests stop at.
const (
	javaLambdaLine = "long total = pricing.quote(items)" // Server.java, in a lambda
	javaQuoteLine  = "long total = q.total();"           // Pricing.java, Pricing.quote
	javaSumLine    = "long sum = (long) items * unit"    // Pricing.java, the nested class Quote
)

// TestJavaDebugThroughKdapDap debugs the Java service through `kdap dap`,
// "runtime" guessed from the image and source paths found from the
// workspace's src/main/java, on OpenJDK 17 and 25: a breakpoint in a
// lambda, a conditional one in a nested class, a hit count, locals, this and fields,
// evaluate, step over and out, caught and uncaught exception breakpoints,
// threads, continue; after disconnect the service serves with no
// breakpoint left, and a thread dump of the same JVM works.
func TestJavaDebugThroughKdapDap(t *testing.T) {
	for _, jvm := range []javaJVM{jdk17, jdk25} {
		t.Run(jvm.name, func(t *testing.T) {
			ns := newNamespace(t, nil)
			svc := jvm.pod(t, ns, "shop", true)
			src := javaLocalCopy(t)
			lambda, sum, quote := lineOf(t, src.server, javaLambdaLine), lineOf(t, src.pricing, javaSumLine), lineOf(t, src.pricing, javaQuoteLine)
			k := startKdap(t)
			c := attachSessionWith(t, k, map[string]any{"target": "pod/shop", "namespace": ns, "localRoot": src.root}, src.server, lambda)
			bp := c.ExpectResponse(t, c.Send("setBreakpoints", godap.SetBreakpointsArguments{Source: godap.Source{Path: src.pricing},
				Breakpoints: []godap.SourceBreakpoint{{Line: sum, Condition: "items > 2 && this.unit == 7"}}}))
			if !daptest.Verified(bp) {
				t.Errorf("conditional breakpoint in the nested class: %s", bp.Raw)
			}

			// items=1: the lambda's breakpoint; the condition is false.
			reply := getAsync(fmt.Sprintf("http://%s/quote?items=1", svc))
			thread, frame := expectStop(t, c, src.server, lambda)
			if vars := locals(t, c, frame); vars["items"] != "1" {
				t.Errorf("locals in the lambda: %v, want items=1", vars)
			}
			if got := evaluate(t, c, frame, "this.requests"); got != "1" {
				t.Errorf("this.requests = %q, want 1", got)
			}
			c.ExpectResponse(t, c.Send("continue", godap.ContinueArguments{ThreadId: thread}))
			expectReply(t, reply, "total: 7", 10*time.Second)

			// items=3: the lambda, then the condition holds in Quote.total.
			reply = getAsync(fmt.Sprintf("http://%s/quote?items=3", svc))
			thread, _ = expectStop(t, c, src.server, lambda)
			c.ExpectResponse(t, c.Send("continue", godap.ContinueArguments{ThreadId: thread}))
			thread, frame = expectStop(t, c, src.pricing, sum)
			for expr, want := range map[string]string{"items * unit": "21", "this.items": "3", "items > 2 && unit == 7": "true"} {
				if got := evaluate(t, c, frame, expr); got != want {
					t.Errorf("evaluate %s = %q, want %s", expr, got, want)
				}
			}
			if got := evaluate(t, c, frame, "this"); !strings.Contains(got, "Pricing$Quote") {
				t.Errorf("this = %q, want a Pricing$Quote", got)
			}
			c.ExpectResponse(t, c.Send("next", godap.NextArguments{ThreadId: thread}))
			_, frame = expectStopReason(t, c, "step", src.pricing, sum+1)
			if vars := locals(t, c, frame); vars["sum"] != "21" {
				t.Errorf("after step over: locals %v, want sum=21", vars)
			}
			c.ExpectResponse(t, c.Send("stepOut", godap.StepOutArguments{ThreadId: thread}))
			expectStopReason(t, c, "step", src.pricing, quote)
			c.ExpectResponse(t, c.Send("continue", godap.ContinueArguments{ThreadId: thread}))
			expectReply(t, reply, "total: 21", 10*time.Second)

			// Exceptions: caught in Pricing.failSafely, uncaught in a thread.
			for _, ex := range []struct{ filter, path, exception, thread, reply string }{
				{"caught", "/fail", "java.lang.IllegalStateException", "", "failed: out of stock"},
				{"uncaught", "/crash", "java.lang.UnsupportedOperationException", "crasher", "crashing a thread"},
			} {
				c.ExpectResponse(t, c.Send("setExceptionBreakpoints", godap.SetExceptionBreakpointsArguments{Filters: []string{ex.filter}}))
				reply := getAsync(fmt.Sprintf("http://%s%s", svc, ex.path))
				stopped := expectStopped(t, c, "exception")
				info := c.ExpectResponse(t, c.Send("exceptionInfo", godap.ExceptionInfoArguments{ThreadId: stopped}))
				if !strings.Contains(string(info.Raw), ex.exception) {
					t.Errorf("%s exception: exceptionInfo %s, want %s", ex.filter, info.Raw, ex.exception)
				}
				if ex.thread != "" && !strings.Contains(string(c.ExpectResponse(t, c.Send("threads", nil)).Raw), ex.thread) {
					t.Errorf("threads do not list %q", ex.thread)
				}
				c.ExpectResponse(t, c.Send("setExceptionBreakpoints", godap.SetExceptionBreakpointsArguments{Filters: []string{}}))
				continueAll(t, c)
				expectReply(t, reply, ex.reply, 10*time.Second)
			}

			// A hit count: the second request stops, the first does not.
			c.ExpectResponse(t, c.Send("setBreakpoints", godap.SetBreakpointsArguments{Source: godap.Source{Path: src.pricing}}))
			c.ExpectResponse(t, c.Send("setBreakpoints", godap.SetBreakpointsArguments{Source: godap.Source{Path: src.server},
				Breakpoints: []godap.SourceBreakpoint{{Line: lambda, HitCondition: "2"}}}))
			expectReply(t, getAsync(fmt.Sprintf("http://%s/quote?items=4", svc)), "total: 28", 10*time.Second)
			reply = getAsync(fmt.Sprintf("http://%s/quote?items=5", svc))
			thread, frame = expectStop(t, c, src.server, lambda)
			if got := evaluate(t, c, frame, "items"); got != "5" {
				t.Errorf("at the second hit: items = %q, want 5", got)
			}
			c.ExpectResponse(t, c.Send("continue", godap.ContinueArguments{ThreadId: thread}))
			expectReply(t, reply, "total: 35", 10*time.Second)

			c.ExpectResponse(t, c.Send("disconnect", godap.DisconnectArguments{}))
			for i := 1; i <= 3; i++ {
				expectReply(t, getAsync(fmt.Sprintf("http://%s/quote?items=%d", svc, i)), fmt.Sprintf("total: %d", 7*i), 10*time.Second)
			}
			out := filepath.Join(t.TempDir(), "threads.txt")
			runKdap(t, "dump", "pod/shop", "-n", ns, "-o", out)
			if b, _ := os.ReadFile(out); !bytes.Contains(b, []byte("Full thread dump")) || !bytes.Contains(b, []byte("HTTP-Dispatcher")) {
				t.Errorf("thread dump of a JVM with JDWP: %.300s", b)
			}
		})
	}
}

// expectStopped waits for a stop of the given reason and returns its thread.
func expectStopped(t *testing.T, c *daptest.Client, reason string) int {
	t.Helper()
	m := c.Expect(t, reason+" stop", func(m *dap.Message) bool {
		return m.Type == "event" && m.Event == "stopped" && strings.Contains(string(m.Raw), `"reason":"`+reason+`"`)
	})
	var sb godap.StoppedEventBody
	daptest.Decode(t, m, &sb)
	return sb.ThreadId
}

// continueAll continues every thread (java-debug stops and continues one
// thread at a time; an exception breakpoint may have stopped several).
func continueAll(t *testing.T, c *daptest.Client) {
	t.Helper()
	var threads godap.ThreadsResponseBody
	daptest.Decode(t, c.ExpectResponse(t, c.Send("threads", nil)), &threads)
	for _, th := range threads.Threads {
		c.ExpectAnyResponse(t, c.Send("continue", godap.ContinueArguments{ThreadId: th.Id}))
	}
}

// runKdap runs a kdap command that ends, against the test cluster, and
// returns its stdout; it fails the test if kdap fails.
func runKdap(t *testing.T, args ...string) string {
	t.Helper()
	out, err := kdapCommand(t, args...)
	if err != nil {
		t.Fatalf("kdap %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// kdapCommand runs a kdap command that ends and returns its stdout and,
// if it failed, an error holding its stderr.
func kdapCommand(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return kdapCommandAs(t, env.cluster.Kubeconfig(), args...)
}

// kdapCommandAs is kdapCommand with another kubeconfig.
func kdapCommandAs(t *testing.T, kubeconfig string, args ...string) (string, error) {
	t.Helper()
	shown := strings.Join(args, " ")
	args = append(args, "--kubeconfig", kubeconfig, "--image-repository", env.images)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // a hung kdap fails the test, not the run
	defer cancel()
	cmd := exec.CommandContext(ctx, env.kdap, args...)
	cmd.Dir = t.TempDir() // where files without -o land
	cmd.Env = append(os.Environ(), "XDG_STATE_HOME="+env.state)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	t.Logf("kdap %s (%s): %s%s", shown, time.Since(start).Round(time.Millisecond), stdout.String(), stderr.String())
	if err != nil {
		return stdout.String(), fmt.Errorf("%v: %s", err, stderr.String())
	}
	return stdout.String(), nil
}

// TestJavaWithJdbThroughKdapAttach is IntelliJ's path — a JDWP client
// connecting to `kdap attach`'s endpoint — with the JDK's own jdb standing
// in: stop at a line, locals, cont, exit; the service serves on.
func TestJavaWithJdbThroughKdapAttach(t *testing.T) {
	ns := newNamespace(t, nil)
	svc := jdk17.pod(t, ns, "shop", true)
	src := javaLocalCopy(t)
	quote := lineOf(t, src.pricing, javaQuoteLine)
	cmd, addr, text := startKdapAttach(t, "pod/shop", "-n", ns, "--image-java", fixtures.JavaAgentImage)
	if !strings.Contains(text, "Remote JVM Debug") {
		t.Errorf("kdap attach printed %q, want the IntelliJ configuration to use", text)
	}
	host, port, _ := net.SplitHostPort(addr)
	jdb := startJdb(t, host, port)
	jdb.send("stop at shop.pricing.Pricing:%d", quote)
	jdb.expect("Set breakpoint shop.pricing.Pricing:" + fmt.Sprint(quote))
	reply := getAsync(fmt.Sprintf("http://%s/quote?items=4", svc))
	jdb.expect(fmt.Sprintf("Breakpoint hit: \"thread=pool-1-thread-1\", shop.pricing.Pricing.quote(), line=%d", quote))
	jdb.send("locals")
	jdb.expect("items = 4")
	jdb.send("cont")
	expectReply(t, reply, "total: 28", 10*time.Second)
	jdb.send("exit")
	jdb.wait()
	expectReply(t, getAsync(fmt.Sprintf("http://%s/quote?items=1", svc)), "total: 7", 10*time.Second)
	interrupt(t, cmd, "kdap attach")
}

// jdbProcess is the JDK's command-line debugger, driven line by line.
type jdbProcess struct {
	t     *testing.T
	cmd   *exec.Cmd
	stdin io.WriteCloser
	mu    sync.Mutex
	out   bytes.Buffer
	seen  int // output already matched
}

func startJdb(t *testing.T, host, port string) *jdbProcess {
	t.Helper()
	j := &jdbProcess{t: t, cmd: exec.Command(filepath.Join(javaimage.JDK, "bin", "jdb"), "-attach", host+":"+port)}
	j.cmd.Stdout, j.cmd.Stderr = j, j
	var err error
	if j.stdin, err = j.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := j.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		j.cmd.Process.Kill()
		j.cmd.Wait()
		if t.Failed() {
			t.Logf("jdb said:\n%s", j.out.String())
		}
	})
	j.expect("Initializing jdb")
	return j
}

func (j *jdbProcess) Write(p []byte) (int, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.out.Write(p)
}

func (j *jdbProcess) send(format string, args ...any) {
	fmt.Fprintf(j.stdin, format+"\n", args...)
}

// expect waits (30 s) for text in what jdb printed since the last match.
func (j *jdbProcess) expect(text string) {
	j.t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		j.mu.Lock()
		rest := j.out.String()[j.seen:]
		i := strings.Index(rest, text)
		if i >= 0 {
			j.seen += i + len(text)
		}
		j.mu.Unlock()
		if i >= 0 {
			return
		}
	}
	j.t.Fatalf("jdb did not print %q", text)
}

func (j *jdbProcess) wait() {
	j.t.Helper()
	done := make(chan error, 1)
	go func() { done <- j.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		j.t.Fatal("jdb did not exit within 10s of exit")
	}
}

// TestJavaFaultsWhileSuspendedResumeTheJVM: with a thread of the JVM
// suspended — at a breakpoint through kdap dap, or by a raw JDWP client's
// VirtualMachine.Suspend through kdap attach — the IDE's connection
// dropping, kdap being SIGKILLed, the port-forward being cut and kdap
// falling silent (SIGSTOP: connected, but no heartbeat) each let the JVM
// run on within SilenceLimit and a second; afterwards the agent holds JDWP again.
func TestJavaFaultsWhileSuspendedResumeTheJVM(t *testing.T) {
	ns := newNamespace(t, nil)
	svc := jdk17.pod(t, ns, "shop", true)
	src := javaLocalCopy(t)
	sum := lineOf(t, src.pricing, javaSumLine)
	faults := []struct {
		name  string
		cause func(t *testing.T, proc *os.Process, c *daptest.Client)
	}{
		{"the IDE's connection dropped", func(_ *testing.T, _ *os.Process, c *daptest.Client) { c.Close() }},
		{"kdap SIGKILLed", func(_ *testing.T, p *os.Process, _ *daptest.Client) { p.Kill() }},
		{"the port-forward cut", func(t *testing.T, p *os.Process, _ *daptest.Client) { cutAPIConnections(t, p.Pid) }},
		{"kdap silent (SIGSTOP)", func(t *testing.T, p *os.Process, _ *daptest.Client) {
			p.Signal(syscall.SIGSTOP)
			t.Cleanup(func() { p.Signal(syscall.SIGCONT) })
		}},
	}
	for i, fault := range faults {
		t.Run("DAP: "+fault.name, func(t *testing.T) {
			k := startKdap(t)
			c := attachSession(t, k, ns, "pod/shop", src.root, src.pricing, sum)
			items := i + 2
			reply := getAsync(fmt.Sprintf("http://%s/quote?items=%d", svc, items))
			expectStop(t, c, src.pricing, sum)
			start := time.Now()
			fault.cause(t, k.cmd.Process, c)
			expectReply(t, reply, fmt.Sprintf("total: %d", 7*items), 10*time.Second)
			released(t, fault.name, start)
		})
	}
	jdwpFaults := append([]struct {
		name  string
		cause func(t *testing.T, proc *os.Process, c *daptest.Client)
	}{{"the client's connection dropped", nil}}, faults[1:]...)
	for _, fault := range jdwpFaults {
		t.Run("JDWP: "+fault.name, func(t *testing.T) {
			cmd, addr, _ := startKdapAttach(t, "pod/shop", "-n", ns, "--image-java", fixtures.JavaAgentImage)
			conn := suspendOverJDWP(t, addr)
			defer conn.Close()
			reply := getAsync(fmt.Sprintf("http://%s/quote?items=5", svc))
			select {
			case got := <-reply:
				t.Fatalf("the JVM answered %q while suspended", got)
			case <-time.After(500 * time.Millisecond):
			}
			start := time.Now()
			if fault.cause == nil {
				conn.Close()
			} else {
				fault.cause(t, cmd.Process, nil)
			}
			expectReply(t, reply, "total: 35", 10*time.Second)
			released(t, fault.name, start)
		})
	}
	expectReply(t, getAsync(fmt.Sprintf("http://%s/quote?items=1", svc)), "total: 7", 10*time.Second)
	if n := ephemeralCount(t, ns, "shop"); n != 1 {
		t.Errorf("%d debugger containers, want 1 (reused by every session)", n)
	}
	if log := agentLog(t, ns, "shop"); !strings.Contains(log, "sent nothing for 1.5s") {
		t.Errorf("the agent's log does not say it ended a silent session:\n%s", log)
	}
}

// released checks that the JVM ran on within 2 s of the fault.
func released(t *testing.T, fault string, start time.Time) {
	t.Helper()
	d := time.Since(start)
	t.Logf("%s: the suspended request was answered %s later", fault, d.Round(time.Millisecond))
	// The agent resumes at agentapi.SilenceLimit at the latest; the rest
	// is the reply's way through the service's forward on a busy machine
	// (seen: 2.05 s after a cut port-forward).
	if limit := agentapi.SilenceLimit + time.Second; d > limit {
		t.Errorf("%s: the JVM ran on after %s, want ≤ %s", fault, d.Round(time.Millisecond), limit)
	}
}

// suspendOverJDWP connects to a JDWP endpoint as a debugger would and
// suspends the whole JVM (VirtualMachine.Suspend).
func suspendOverJDWP(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := jdwp.ShakeHands(conn); err != nil {
		t.Fatal(err)
	}
	cmd := make([]byte, 11)
	binary.BigEndian.PutUint32(cmd[:4], 11)
	binary.BigEndian.PutUint32(cmd[4:8], 1)
	cmd[9], cmd[10] = 1, 8 // VirtualMachine.Suspend
	conn.Write(cmd)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	reply, err := jdwp.ReadPacket(bufio.NewReader(conn))
	if err != nil || !reply.IsReply() || reply.ID() != 1 {
		t.Fatalf("VirtualMachine.Suspend: %v %v", reply, err)
	}
	return conn
}

// TestJavaWithoutJDWP: a JVM started without JDWP cannot be given
// breakpoints, so attaching fails with the flag for its JDK; a thread
// dump, a heap dump and a JFR recording of it are fetched all the same,
// and checked with the JDK's tools (jfr) and by reading the HPROF records.
func TestJavaWithoutJDWP(t *testing.T) {
	k := startKdap(t)
	for _, jvm := range []javaJVM{jdk17, jdk25} {
		t.Run(jvm.name, func(t *testing.T) {
			ns := newNamespace(t, nil)
			svc := jvm.pod(t, ns, "shop", false)
			want := []string{"started without JDWP", runtimes.JDWPFlag(jvm.major), "JAVA_TOOL_OPTIONS", "kdap dump, kdap heap and kdap profile"}
			if jvm.major >= 24 {
				want = append(want, "JDK 24 and later have no onjcmd")
			}
			msg := attachError(t, k, map[string]any{"target": "pod/shop", "namespace": ns})
			for _, w := range want {
				if !strings.Contains(msg, w) {
					t.Errorf("attach error %q does not say %q", msg, w)
				}
			}
			if _, err := kdapCommand(t, "attach", "pod/shop", "-n", ns); err == nil || !strings.Contains(err.Error(), runtimes.JDWPFlag(jvm.major)) {
				t.Errorf("kdap attach: %v; want it to fail naming %s", err, runtimes.JDWPFlag(jvm.major))
			}

			dir := t.TempDir()
			busy := getAsync(fmt.Sprintf("http://%s/busy?ms=2000", svc))
			time.Sleep(300 * time.Millisecond)
			runKdap(t, "dump", "pod/shop", "-n", ns, "-o", filepath.Join(dir, "threads.txt"))
			if b, _ := os.ReadFile(filepath.Join(dir, "threads.txt")); !bytes.Contains(b, []byte("Full thread dump")) || !bytes.Contains(b, []byte("HTTP-Dispatcher")) || !bytes.Contains(b, []byte("at shop.Server.busyWork(Server.java:")) {
				t.Errorf("thread dump: %.3000s", b)
			}
			expectReply(t, busy, "busy for 2000 ms", 10*time.Second)
			runKdap(t, "heap", "pod/shop", "-n", ns, "-o", filepath.Join(dir, "heap.hprof"))
			checkHPROF(t, filepath.Join(dir, "heap.hprof"), "shop/Server")
			busy = getAsync(fmt.Sprintf("http://%s/busy?ms=3000", svc))
			out := runKdap(t, "profile", "pod/shop", "-n", ns, "--duration", "3s", "-o", filepath.Join(dir, "recording.jfr"))
			expectReply(t, busy, "busy for 3000 ms", 10*time.Second)
			if !strings.Contains(out, "flame graph: "+filepath.Join(dir, "recording.svg")) {
				t.Errorf("kdap profile names no flame graph: %q", out)
			}
			checkFlameGraph(t, filepath.Join(dir, "recording.svg"), "shop.Server.busyWork")
			summary, err := exec.Command(filepath.Join(javaimage.JDK, "bin", "jfr"), "summary", filepath.Join(dir, "recording.jfr")).CombinedOutput()
			if err != nil || !bytes.Contains(summary, []byte("jdk.CPULoad")) {
				t.Errorf("jfr summary of the recording: %v\n%s", err, summary)
			}
			expectReply(t, getAsync(fmt.Sprintf("http://%s/quote?items=2", svc)), "total: 14", 10*time.Second)
		})
	}
}

// checkHPROF reads a heap dump's header and every top-level record to the
// end of the file, and checks that it holds heap dump segments and the
// name of class.
func checkHPROF(t *testing.T, file, class string) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	const magic = "JAVA PROFILE 1.0.2\x00"
	if !bytes.HasPrefix(b, []byte(magic)) || len(b) < len(magic)+12 {
		t.Fatalf("%s does not start with an HPROF header: %q", file, b[:min(len(b), 32)])
	}
	idSize := binary.BigEndian.Uint32(b[len(magic):])
	if idSize != 4 && idSize != 8 {
		t.Fatalf("HPROF identifier size %d", idSize)
	}
	counts := map[byte]int{}
	names := false
	for p := len(magic) + 12; p < len(b); {
		if p+9 > len(b) {
			t.Fatalf("HPROF record header cut at offset %d of %d", p, len(b))
		}
		tag, n := b[p], int(binary.BigEndian.Uint32(b[p+5:]))
		body := p + 9
		if body+n > len(b) {
			t.Fatalf("HPROF record 0x%02x at %d: length %d runs past the end (%d)", tag, p, n, len(b))
		}
		counts[tag]++
		if tag == 0x01 && string(b[body+int(idSize):body+n]) == class { // STRING: id, then UTF-8
			names = true
		}
		p = body + n
	}
	t.Logf("%s: %d bytes, records by tag: %v", filepath.Base(file), len(b), counts)
	if counts[0x1C] == 0 || counts[0x2C] != 1 || counts[0x02] == 0 { // HEAP DUMP SEGMENT, HEAP DUMP END, LOAD CLASS
		t.Errorf("the heap dump lacks segments, its end or classes: %v", counts)
	}
	if !names {
		t.Errorf("the heap dump does not name %s", class)
	}
}

// TestJavaAndGoAtOnce: a Java and a Go service debugged at the same time
// through one kdap process.
func TestJavaAndGoAtOnce(t *testing.T) {
	ns := newNamespace(t, nil)
	javaSvc := jdk17.pod(t, ns, "javashop", true)
	createPod(t, ns, "gohttp", fixtures.GoHTTPImage)
	goSvc := serviceForward(t, ns, "gohttp")
	src := javaLocalCopy(t)
	goRoot, mainGo := localCopy(t)
	sum, goLine := lineOf(t, src.pricing, javaSumLine), lineOf(t, mainGo, "message := fmt.Sprintf")
	k := startKdap(t)

	j := attachSessionWith(t, k, map[string]any{"target": "pod/javashop", "namespace": ns, "localRoot": src.root}, src.pricing, sum)
	g := attachSessionWith(t, k, map[string]any{"target": "pod/gohttp", "namespace": ns, "localRoot": goRoot}, mainGo, goLine)
	javaReply := getAsync(fmt.Sprintf("http://%s/quote?items=2", javaSvc))
	goReply := getAsync(fmt.Sprintf("http://%s/hello?name=both", goSvc))
	javaThread, javaFrame := expectStop(t, j, src.pricing, sum)
	goThread, goFrame := expectStop(t, g, mainGo, goLine)
	if got := evaluate(t, j, javaFrame, "items"); got != "2" {
		t.Errorf("Java session: items = %s", got)
	}
	if got := locals(t, g, goFrame)["name"]; got != `"both"` {
		t.Errorf("Go session: name = %s", got)
	}
	j.ExpectResponse(t, j.Send("continue", godap.ContinueArguments{ThreadId: javaThread}))
	g.ExpectResponse(t, g.Send("continue", godap.ContinueArguments{ThreadId: goThread}))
	expectReply(t, javaReply, "total: 14", 10*time.Second)
	expectReply(t, goReply, "hello, both", 10*time.Second)
	j.ExpectResponse(t, j.Send("disconnect", godap.DisconnectArguments{}))
	g.ExpectResponse(t, g.Send("disconnect", godap.DisconnectArguments{}))
}
