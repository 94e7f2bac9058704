package bench

import (
	"bufio"
	"context"
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

	godap "github.com/google/go-dap"

	"github.com/kdap/kdap/agentapi"
	"github.com/kdap/kdap/dap"
	"github.com/kdap/kdap/dap/daptest"
	javaimage "github.com/kdap/kdap/images/java"
	"github.com/kdap/kdap/runtimes"
)

// BenchmarkJavaRoundTrip compares DAP requests while the Java fixture is
// suspended at a breakpoint, in the same run, with the same Java debug
// server (images/java): "direct" is the server attached straight to the
// JVM's JDWP port, as one would run java-debug by hand; "kdap" is a kdap
// session (with its heartbeats) through the agent, which relays the
// server's JDWP packets onto the connection it holds.
func BenchmarkJavaRoundTrip(b *testing.B) {
	repo, _ := filepath.Abs("../..")
	jre, lib, err := javaimage.Build(context.Background(), repo, b.TempDir(), io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	java, cp := filepath.Join(jre, "bin", "java"), filepath.Join(lib, "*")
	src := filepath.Join(repo, "test", "fixtures", "javahttp", "src", "main", "java")
	pricing := filepath.Join(src, "shop", "pricing", "Pricing.java")
	line := lineOf(b, pricing, "long sum = (long) items * unit")
	target := startJavaTarget(b, repo)
	attachArgs, _ := json.Marshal(map[string]any{"type": "java", "request": "attach", "hostName": "127.0.0.1", "port": 0,
		"sourcePaths": []string{src}, "kdapSourceFiles": map[string][]string{src: {"shop/Server.java", "shop/pricing/Pricing.java"}}})

	results := map[string]map[string]float64{}
	bp := godap.SetBreakpointsArguments{Source: godap.Source{Path: pricing}, Breakpoints: []godap.SourceBreakpoint{{Line: line}}}
	stop := func() { target.get("/quote?items=3") }
	// Direct first: JDWP takes one client, and the agent holds it once it runs.
	roundTrip{name: "direct", connect: func() (*daptest.Client, func()) { return javaDirect(b, target, java, cp, attachArgs) },
		stop: stop, expr: "items * unit + 1", results: results, sources: bp}.run(b)
	roundTrip{name: "kdap", connect: func() (*daptest.Client, func()) { return javaThroughKdap(b, target, java, cp, attachArgs) },
		stop: stop, expr: "items * unit + 1", results: results, sources: bp}.run(b)
	printRatios("java", "java-debug", results)
}

// javaTarget is the Java fixture running here, its JDWP listening.
type javaTarget struct {
	pid, jdwp int
	http      string
}

func (t javaTarget) get(path string) {
	if resp, err := (&http.Client{Timeout: time.Minute}).Get("http://" + t.http + path); err == nil {
		resp.Body.Close()
	}
}

// startJavaTarget compiles the fixture and runs it on the machine's JDK,
// JDWP listening on a free loopback port.
func startJavaTarget(b *testing.B, repo string) javaTarget {
	classes := b.TempDir()
	var srcs []string
	filepath.WalkDir(filepath.Join(repo, "test", "fixtures", "javahttp", "src"), func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".java") {
			srcs = append(srcs, p)
		}
		return err
	})
	if out, err := exec.Command(filepath.Join(javaimage.JDK, "bin", "javac"), append([]string{"-g", "-d", classes}, srcs...)...).CombinedOutput(); err != nil {
		b.Fatalf("javac: %v\n%s", err, out)
	}
	t := javaTarget{http: freeAddr(b), jdwp: freePort(b)}
	_, port, _ := net.SplitHostPort(t.http)
	cmd := exec.Command(filepath.Join(javaimage.JDK, "bin", "java"),
		fmt.Sprintf("-agentlib:jdwp=transport=dt_socket,server=y,suspend=n,address=127.0.0.1:%d", t.jdwp), "-cp", classes, "shop.Server")
	cmd.Env = append(os.Environ(), "PORT="+port)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	sc := bufio.NewScanner(out)
	for sc.Scan() && !strings.Contains(sc.Text(), "javahttp listening") {
	}
	go func() {
		for sc.Scan() {
		}
	}()
	t.pid = cmd.Process.Pid
	return t
}

// javaThroughKdap is a kdap session (with its heartbeats) on an in-process
// agent for the JVM.
func javaThroughKdap(b *testing.B, t javaTarget, java, cp string, args json.RawMessage) (*daptest.Client, func()) {
	return throughKdap(b, t.pid, runtimes.Java, map[string]string{runtimes.JavaBinEnv: java, runtimes.JavaDebugCPEnv: cp}, args,
		dap.Heartbeat{Every: agentapi.HeartbeatInterval, Command: agentapi.HeartbeatCommand})
}

// javaDirect runs the Java debug server with its JDWP socket bridged
// straight to the JVM's JDWP port (bytes copied, nothing parsed), and
// returns a client attached to it.
func javaDirect(b *testing.B, t javaTarget, java, cp string, args json.RawMessage) (*daptest.Client, func()) {
	sock := filepath.Join(b.TempDir(), "jdwp.sock")
	bridge, err := net.Listen("unix", sock)
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		for {
			c, err := bridge.Accept()
			if err != nil {
				return
			}
			jvm, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", t.jdwp))
			if err != nil {
				c.Close()
				continue
			}
			go func() { io.Copy(jvm, c); jvm.Close() }()
			go func() { io.Copy(c, jvm); c.Close() }()
		}
	}()
	cmd := exec.Command(java, "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-cp", cp, runtimes.JavaDebugMain, "0")
	cmd.Env = append(os.Environ(), "KDAP_JDWP_SOCKET="+sock)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	var addr string
	for sc.Scan() {
		if _, a, ok := strings.Cut(sc.Text(), "kdap java-debug listening at "); ok {
			addr = strings.TrimSpace(a)
			break
		}
	}
	go func() {
		for sc.Scan() {
		}
	}()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	c := configured(b, conn, args)
	return c, func() { conn.Close(); bridge.Close(); cmd.Process.Kill(); cmd.Wait() }
}
