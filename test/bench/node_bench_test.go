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
	"syscall"
	"testing"
	"time"

	godap "github.com/google/go-dap"

	"github.com/kdap/kdap/dap"
	"github.com/kdap/kdap/dap/daptest"
	nodeimage "github.com/kdap/kdap/images/node"
	"github.com/kdap/kdap/runtimes"
)

// BenchmarkNodeRoundTrip compares DAP requests while the Node.js fixture
// is paused at a breakpoint, in the same run: "direct" is js-debug attached
// straight to the target's inspector, as a user would attach it by hand
// (its own server, the client answering startDebugging itself); "kdap" is
// a kdap session through the agent, whose relay to the inspector
// acknowledges at once (TCP_QUICKACK). Both use the same js-debug build.
func BenchmarkNodeRoundTrip(b *testing.B) {
	dist, err := nodeimage.FetchDist(context.Background(), io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	node := filepath.Join(dist.Node, "bin", "node")
	server := filepath.Join(dist.JSDebug, "vsDebugServer.js")
	fixture, _ := filepath.Abs("../fixtures/nodehttp")
	pricing := filepath.Join(fixture, "lib", "pricing.js")
	line := lineOf(b, pricing, "const total = items * unit")
	target := startNodeTarget(b, node, fixture)

	results := map[string]map[string]float64{}
	bp := godap.SetBreakpointsArguments{Source: godap.Source{Path: pricing}, Breakpoints: []godap.SourceBreakpoint{{Line: line}}}
	stop := func() { target.get("/quote?items=3") }
	roundTrip{name: "kdap", connect: func() (*daptest.Client, func()) { return nodeThroughKdap(b, target, node, server, fixture) },
		stop: stop, expr: "items * unit + 1", results: results, sources: bp}.run(b)
	roundTrip{name: "direct", connect: func() (*daptest.Client, func()) { return nodeDirect(b, target, node, server) },
		stop: stop, expr: "items * unit + 1", results: results, sources: bp}.run(b)
	printRatios("node", "js-debug", results)
}

// nodeTarget is the Node.js fixture running here.
type nodeTarget struct {
	pid, inspector int
	http           string
}

func (t nodeTarget) get(path string) {
	if resp, err := (&http.Client{Timeout: time.Minute}).Get("http://" + t.http + path); err == nil {
		resp.Body.Close()
	}
}

// startNodeTarget runs the fixture, its inspector (SIGUSR1) on a free port.
func startNodeTarget(b *testing.B, node, dir string) nodeTarget {
	t := nodeTarget{http: freeAddr(b), inspector: freePort(b)}
	_, port, _ := net.SplitHostPort(t.http)
	cmd := exec.Command(node, fmt.Sprintf("--inspect-port=127.0.0.1:%d", t.inspector), "server.js")
	cmd.Dir, cmd.Env = dir, append(os.Environ(), "PORT="+port)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	sc := bufio.NewScanner(out)
	if !sc.Scan() {
		b.Fatal("the Node.js fixture did not start")
	}
	go func() {
		for sc.Scan() {
		}
	}()
	t.pid = cmd.Process.Pid
	return t
}

// nodeThroughKdap is a kdap session on an in-process agent for the Node.js
// target, the IDE's folder being the target's own.
func nodeThroughKdap(b *testing.B, t nodeTarget, node, server, root string) (*daptest.Client, func()) {
	args, _ := json.Marshal(map[string]any{"localRoot": root, "remoteRoot": root})
	return throughKdap(b, t.pid, runtimes.Node, map[string]string{runtimes.NodeBinEnv: node, runtimes.JSDebugEnv: server}, args, dap.Heartbeat{})
}

// nodeDirect opens the target's inspector with SIGUSR1, starts js-debug's
// server and attaches it straight to the inspector as a DAP client that
// answers startDebugging does: it returns the child session's client.
func nodeDirect(b *testing.B, t nodeTarget, node, server string) (*daptest.Client, func()) {
	if err := syscall.Kill(t.pid, syscall.SIGUSR1); err != nil {
		b.Fatal(err)
	}
	for i := 0; ; i++ {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", t.inspector)); err == nil {
			c.Close()
			break
		}
		if i > 300 {
			b.Fatal("the inspector did not open")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cmd := exec.Command(node, server, "0", "127.0.0.1")
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	var addr string
	for sc.Scan() {
		if _, a, ok := strings.Cut(sc.Text(), "Debug server listening at "); ok {
			addr = strings.TrimSpace(a)
			break
		}
	}
	go func() {
		for sc.Scan() {
		}
	}()
	dial := func() *daptest.Client {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		c := daptest.NewClient(conn)
		c.Timeout = time.Minute
		c.ExpectResponse(b, c.Send("initialize", godap.InitializeRequestArguments{AdapterID: "pwa-node", LinesStartAt1: true, ColumnsStartAt1: true,
			PathFormat: "path", SupportsStartDebuggingRequest: true}))
		return c
	}
	parent := dial()
	parent.Send("attach", map[string]any{"type": "pwa-node", "request": "attach", "address": "127.0.0.1", "port": t.inspector, "restart": false})
	parent.ExpectEvent(b, "initialized")
	parent.Send("configurationDone", nil)
	req := parent.ExpectRequest(b, "startDebugging")
	var sd struct {
		Arguments struct {
			Configuration json.RawMessage `json:"configuration"`
		} `json:"arguments"`
	}
	json.Unmarshal(req.Raw, &sd)
	resp, _ := json.Marshal(map[string]any{"seq": parent.NextSeq(), "type": "response", "request_seq": req.Seq, "command": "startDebugging", "success": true})
	parent.SendRaw(resp)
	child := dial()
	attach := child.Send("attach", sd.Arguments.Configuration)
	child.ExpectEvent(b, "initialized")
	child.ExpectResponses(b, child.Send("configurationDone", nil), attach)
	return child, func() {
		parent.ExpectAnyResponse(b, parent.Send("terminate", map[string]any{}))
		child.Close()
		parent.Close()
		cmd.Process.Kill()
		cmd.Wait()
	}
}

func freeAddr(b *testing.B) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func freePort(b *testing.B) int {
	_, p, _ := net.SplitHostPort(freeAddr(b))
	var n int
	fmt.Sscan(p, &n)
	return n
}
