//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	godap "github.com/google/go-dap"
	corev1 "k8s.io/api/core/v1"

	"github.com/kdap/kdap/agentapi"
	"github.com/kdap/kdap/dap"
	"github.com/kdap/kdap/dap/daptest"
	"github.com/kdap/kdap/forward"
	"github.com/kdap/kdap/inject"
	"github.com/kdap/kdap/runtimes"
	"github.com/kdap/kdap/test/fixtures"
)

// nodeSource is a Node.js fixture as an IDE workspace holds it.
type nodeSource struct {
	dir   string // test/fixtures/… to copy
	files []string
	file  string // the file with the breakpoint, relative
	line  string // the breakpoint line's text
	expr  string // an expression over the locals there, = 22 for items=3
}

var (
	nodeJS = nodeSource{dir: "nodehttp", files: []string{"server.js", "lib/pricing.js", "package.json"},
		file: "lib/pricing.js", line: "const total = items * unit", expr: "items * unit + 1"}
	nodeTS = nodeSource{dir: "nodets", files: []string{"src/server.ts", "src/pricing.ts", "package.json"},
		file: "src/pricing.ts", line: "const total: number = order.items * order.unit", expr: "order.items * order.unit + 1"}
)

// localCopy puts the fixture's sources in a fresh workspace (a path unlike
// the container's) and returns it with the breakpoint's file and line.
func (s nodeSource) localCopy(t testing.TB) (root, file string, line int) {
	t.Helper()
	root = filepath.Join(t.TempDir(), "workspace", s.dir)
	for _, f := range s.files {
		b, err := os.ReadFile(filepath.Join(env.repo, "test", "fixtures", s.dir, f))
		if err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Dir(filepath.Join(root, f)), 0o755)
		if err := os.WriteFile(filepath.Join(root, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	file = filepath.Join(root, s.file)
	return root, file, lineOf(t, file, s.line)
}

// TestNodeDebugThroughKdapDap debugs the Node.js service through `kdap dap`
// with "runtime" left out (guessed from the image): Node.js 24 and 22,
// JavaScript and TypeScript (breakpoints in the .ts files, frames as .ts
// paths), the target as PID 1 and behind /pause, its uid from the image or
// from the pod spec; with a DAP client that never answers startDebugging
// and with one that would (VS Code). Each sees one session: stop, locals,
// evaluate, step, continue; after disconnect the service runs on and the
// inspector is closed.
func TestNodeDebugThroughKdapDap(t *testing.T) {
	yes := true
	uid := int64(65532)
	for _, tc := range []struct {
		name           string
		image          string
		src            nodeSource
		edit           func(*corev1.Pod)
		startDebugging bool // the client says it supports startDebugging
		ownInspector   bool // started with --inspect: its inspector stays open afterwards
	}{
		{"Node.js 24, PID 1, plain DAP client", fixtures.NodeHTTPImage, nodeJS, func(*corev1.Pod) {}, false, false},
		{"Node.js 22, runAsUser in the pod spec, client with startDebugging", fixtures.NodeHTTP22Image, nodeJS, func(p *corev1.Pod) {
			p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: &uid, RunAsGroup: &uid}
		}, true, false},
		{"behind /pause (shareProcessNamespace)", fixtures.NodeHTTPImage, nodeJS, func(p *corev1.Pod) { p.Spec.ShareProcessNamespace = &yes }, false, false},
		{"TypeScript with source maps", fixtures.NodeTSImage, nodeTS, func(*corev1.Pod) {}, true, false},
		{"started with --inspect: its own inspector is used and left open", fixtures.NodeHTTPImage, nodeJS, func(p *corev1.Pod) {
			p.Spec.Containers[0].Command = []string{"/usr/local/bin/node", "--inspect=127.0.0.1:9229", fixtures.NodeSourceRoot + "/server.js"}
		}, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := newNamespace(t, nil)
			createPodWith(t, ns, "web", tc.image, tc.edit)
			logsOnFailure(t, ns, "web")
			svc := podForward(t, ns, "web", fixtures.NodeHTTPPort)
			root, file, line := tc.src.localCopy(t)
			k := startKdap(t)
			init := godap.InitializeRequestArguments{ClientID: "e2e", AdapterID: "kdap", LinesStartAt1: true, ColumnsStartAt1: true,
				PathFormat: "path", SupportsProgressReporting: true, SupportsStartDebuggingRequest: tc.startDebugging}
			c := attachSessionInit(t, k, init, map[string]any{"target": "pod/web", "namespace": ns, "localRoot": root}, file, line)

			reply := getAsync(fmt.Sprintf("http://%s/quote?items=3", svc))
			thread, frame := expectStop(t, c, file, line)
			vars := locals(t, c, frame)
			if vars["items"] != "3" {
				t.Errorf("local items = %q, want 3 (all: %v)", vars["items"], vars)
			}
			if got := evaluate(t, c, frame, tc.src.expr); got != "22" {
				t.Errorf("evaluate %s = %q, want 22", tc.src.expr, got)
			}
			c.ExpectResponse(t, c.Send("next", godap.NextArguments{ThreadId: thread}))
			expectStopReason(t, c, "step", file, line+1)
			c.ExpectResponse(t, c.Send("continue", godap.ContinueArguments{ThreadId: thread}))
			expectReply(t, reply, "total: 21", 10*time.Second)

			c.ExpectResponse(t, c.Send("disconnect", godap.DisconnectArguments{}))
			noReverseRequest(t, c, "startDebugging")
			for i := 1; i <= 3; i++ {
				expectReply(t, getAsync(fmt.Sprintf("http://%s/quote?items=%d", svc, i)), fmt.Sprintf("total: %d", 7*i), 10*time.Second)
			}
			if tc.ownInspector {
				if got := httpGet(t, "http://"+podForward(t, ns, "web", runtimes.DefaultInspectorPort)+"/json/version"); !strings.Contains(got, "node.js/v") {
					t.Errorf("the target's own inspector: %q", got)
				}
				return
			}
			expectInspectorClosed(t, ns, "web")
		})
	}
}

// TestNodeFaultsWhilePausedReleaseTheTarget: with the target paused at a
// breakpoint, the IDE's connection dropping, kdap being SIGKILLed and the
// port-forward being cut each let the target run on within 2 s, and the
// inspector is closed afterwards.
func TestNodeFaultsWhilePausedReleaseTheTarget(t *testing.T) {
	ns := newNamespace(t, nil)
	createPod(t, ns, "web", fixtures.NodeHTTPImage)
	logsOnFailure(t, ns, "web")
	svc := podForward(t, ns, "web", fixtures.NodeHTTPPort)
	root, file, line := nodeJS.localCopy(t)
	for i, fault := range []struct {
		name  string
		cause func(k *kdapProcess, c *daptest.Client)
	}{
		{"the IDE's connection dropped", func(_ *kdapProcess, c *daptest.Client) { c.Close() }},
		{"kdap SIGKILLed", func(k *kdapProcess, _ *daptest.Client) { k.cmd.Process.Kill() }},
		{"the port-forward cut", func(k *kdapProcess, c *daptest.Client) {
			cutAPIConnections(t, k.cmd.Process.Pid)
			c.ExpectEvent(t, "terminated")
		}},
	} {
		t.Run(fault.name, func(t *testing.T) {
			k := startKdap(t)
			c := attachSession(t, k, ns, "pod/web", root, file, line)
			items := i + 2
			reply := getAsync(fmt.Sprintf("http://%s/quote?items=%d", svc, items))
			expectStop(t, c, file, line)
			start := time.Now()
			fault.cause(k, c)
			expectReply(t, reply, fmt.Sprintf("total: %d", 7*items), 10*time.Second)
			t.Logf("%s: the paused request was answered %s later", fault.name, time.Since(start).Round(time.Millisecond))
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("%s: the target was released after %s, want ≤ 2s", fault.name, d.Round(time.Millisecond))
			}
			expectInspectorClosed(t, ns, "web")
		})
	}
	if n := ephemeralCount(t, ns, "web"); n != 1 {
		t.Errorf("%d debugger containers, want 1 (reused by every session)", n)
	}
}

// TestNodeCallingGo is the scenario of several services in one IDE: the
// Node.js service calls the Go service beside it; through one `kdap dap`,
// a request stops first in Node.js, steps and continues, then stops in
// Go; disconnecting both leaves both serving.
func TestNodeCallingGo(t *testing.T) {
	ns := newNamespace(t, nil)
	createShop(t, ns)
	svc := podForward(t, ns, "shop", fixtures.NodeHTTPPort)
	nodeRoot, pricing, _ := nodeJS.localCopy(t)
	serverJS := filepath.Join(filepath.Dir(filepath.Dir(pricing)), "server.js")
	nodeLine := lineOf(t, serverJS, "const url = `${goService}/hello")
	goRoot, mainGo := localCopy(t)
	goLine := lineOf(t, mainGo, "message := fmt.Sprintf")
	k := startKdap(t)

	// "container" picks each service's container; each gets its own
	// debugger container.
	web := attachSessionWith(t, k, map[string]any{"target": "pod/shop", "namespace": ns, "container": "web", "localRoot": nodeRoot}, serverJS, nodeLine)
	api := attachSessionWith(t, k, map[string]any{"target": "pod/shop", "namespace": ns, "container": "api", "localRoot": goRoot}, mainGo, goLine)
	reply := getAsync(fmt.Sprintf("http://%s/checkout?name=both", svc))
	thread, frame := expectStop(t, web, serverJS, nodeLine)
	if got := evaluate(t, web, frame, "name"); got != "'both'" {
		t.Errorf("Node.js session: name = %s, want 'both'", got)
	}
	web.ExpectResponse(t, web.Send("next", godap.NextArguments{ThreadId: thread}))
	expectStopReason(t, web, "step", serverJS, nodeLine+1)
	web.ExpectResponse(t, web.Send("continue", godap.ContinueArguments{ThreadId: thread}))
	goThread, goFrame := expectStop(t, api, mainGo, goLine)
	if got := locals(t, api, goFrame)["name"]; got != `"both"` {
		t.Errorf("Go session sees name=%s", got)
	}
	api.ExpectResponse(t, api.Send("continue", godap.ContinueArguments{ThreadId: goThread}))
	expectReply(t, reply, "checkout for both: hello, both", 10*time.Second)

	web.ExpectResponse(t, web.Send("disconnect", godap.DisconnectArguments{}))
	api.ExpectResponse(t, api.Send("disconnect", godap.DisconnectArguments{}))
	expectReply(t, getAsync(fmt.Sprintf("http://%s/checkout?name=after", svc)), "checkout for after: hello, after", 10*time.Second)
	if n := ephemeralCount(t, ns, "shop"); n != 2 {
		t.Errorf("%d debugger containers, want 2 (one per target container)", n)
	}
}

// createShop runs pod "shop": the Node.js service (container web) calling
// the Go service beside it (container api).
func createShop(t *testing.T, ns string) {
	t.Helper()
	createPodWith(t, ns, "shop", fixtures.NodeHTTPImage, func(p *corev1.Pod) {
		p.Spec.Containers[0].Name = "web"
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "api", Image: fixtures.GoHTTPImage, ImagePullPolicy: corev1.PullNever})
	})
	logsOnFailure(t, ns, "shop")
}

// TestNodeErrorsNameTheFix: each way a Node.js attach fails says what to
// do and leaves the service serving.
func TestNodeErrorsNameTheFix(t *testing.T) {
	k := startKdap(t)
	for _, tc := range []struct {
		name string
		pod  func(t *testing.T, ns string)
		args map[string]any
		want []string
	}{
		{"no SIGUSR1 handler", func(t *testing.T, ns string) {
			createPodWith(t, ns, "target", fixtures.NodeHTTPImage, func(p *corev1.Pod) {
				p.Spec.Containers[0].Command = []string{"/usr/local/bin/node", "--disable-sigusr1", fixtures.NodeSourceRoot + "/server.js"}
			})
		}, nil, []string{"does not handle SIGUSR1", "--disable-sigusr1", "--inspect=127.0.0.1:9229"}},
		{"inspector port taken by another container", func(t *testing.T, ns string) {
			createPodWith(t, ns, "target", fixtures.NodeHTTPImage, func(p *corev1.Pod) {
				p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "squatter", Image: fixtures.NodeHTTPImage, ImagePullPolicy: corev1.PullNever,
					Command: []string{"/usr/local/bin/node", "-e", "require('net').createServer().listen(9229, '127.0.0.1'); setInterval(() => {}, 1e6)"}})
				p.Annotations = map[string]string{"kubectl.kubernetes.io/default-container": "app"}
			})
		}, nil, []string{"cannot open its inspector", "port 9229 of the pod is taken", "--inspect-port"}},
		{"runtime node on a Go program", func(t *testing.T, ns string) { createPod(t, ns, "target", fixtures.GoHTTPImage) },
			map[string]any{"runtime": "node"}, []string{"is a Go program, not Node.js", `set "runtime": "go"`}},
		{"not a Node.js program at all", func(t *testing.T, ns string) { createPod(t, ns, "target", fixtures.NotGoImage) },
			map[string]any{"runtime": "node"}, []string{"is not a Node.js program", "/notgo", `set "runtime"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := newNamespace(t, nil)
			tc.pod(t, ns)
			args := map[string]any{"target": "target", "namespace": ns}
			for k, v := range tc.args {
				args[k] = v
			}
			msg := attachError(t, k, args)
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
			p := getPod(t, ns, "target")
			for _, cs := range p.Status.ContainerStatuses {
				if cs.RestartCount != 0 || cs.State.Running == nil {
					t.Errorf("container %s after the failed attach: %+v", cs.Name, cs.State)
				}
			}
		})
	}
}

// expectStopReason waits for a stop of the given reason at file:line and
// returns its thread and top frame.
func expectStopReason(t *testing.T, c *daptest.Client, reason, file string, line int) (threadID, frameID int) {
	t.Helper()
	stopped := c.Expect(t, reason+" stop", func(m *dap.Message) bool {
		var ev godap.StoppedEvent
		return m.Type == "event" && m.Event == "stopped" && json.Unmarshal(m.Raw, &ev) == nil && ev.Body.Reason == reason
	})
	var sb godap.StoppedEventBody
	daptest.Decode(t, stopped, &sb)
	st := c.ExpectResponse(t, c.Send("stackTrace", godap.StackTraceArguments{ThreadId: sb.ThreadId, Levels: 1}))
	var stack godap.StackTraceResponseBody
	daptest.Decode(t, st, &stack)
	if len(stack.StackFrames) == 0 || stack.StackFrames[0].Source == nil || stack.StackFrames[0].Source.Path != file || stack.StackFrames[0].Line != line {
		t.Errorf("after %s: top frame %s, want %s:%d", reason, st.Raw, file, line)
		return sb.ThreadId, 0
	}
	return sb.ThreadId, stack.StackFrames[0].Id
}

// noReverseRequest fails if the client was sent the reverse request: kdap
// joins js-debug's two sessions, so no client is asked to open another.
func noReverseRequest(t *testing.T, c *daptest.Client, command string) {
	t.Helper()
	if c.SawRequest(command) {
		t.Errorf("the client was sent a %s request", command)
	}
}

// expectInspectorClosed checks, within 5 s, that nothing in the pod
// listens on Node.js's inspector port any more: a forwarded connection to
// 127.0.0.1:9229 is refused inside the pod (the forward ends with the
// runtime's "connection refused").
func expectInspectorClosed(t *testing.T, ns, pod string) {
	t.Helper()
	d, err := forward.NewDialer(env.rest, forward.URL(env.clientset, ns, pod))
	if err != nil {
		t.Fatal(err)
	}
	last := "nothing tried"
	// kdap answers the IDE's disconnect before the agent closes the
	// inspector (a few ms later): the first tries may still find it open.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		mark := clientGoLog.Len()
		f, err := forward.Start(context.Background(), d, 0, runtimes.DefaultInspectorPort)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := net.Dial("tcp", f.Addr())
		if err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		conn.Write([]byte("GET /json/version HTTP/1.0\r\n\r\n"))
		buf := make([]byte, 64)
		n, _ := conn.Read(buf)
		conn.Close()
		if n == 0 { // refused: the forward ends and says why (client-go's also logs it)
			select {
			case <-f.Done():
			case <-time.After(3 * time.Second):
			}
		}
		logged := clientGoLog.Since(mark)
		if err := f.Err(); err != nil {
			logged += err.Error()
		}
		f.Close()
		if n == 0 && strings.Contains(logged, fmt.Sprintf("127.0.0.1:%d: connect: connection refused", runtimes.DefaultInspectorPort)) {
			return
		}
		last = fmt.Sprintf("read %q; client-go logged %q", buf[:n], logged)
	}
	t.Fatalf("port %d in pod %s/%s is still open after the session: %s", runtimes.DefaultInspectorPort, ns, pod, last)
}

// cutAPIConnections aborts every TCP connection the process pid has to
// the API server (`ss -K`), which ends its port-forwards as a network
// failure would; the API server is not touched.
func cutAPIConnections(t *testing.T, pid int) {
	t.Helper()
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(env.rest.Host, "https://"))
	out, err := exec.Command("ss", "-tnp", "state", "established", "dport", "= :"+port).CombinedOutput()
	if err != nil {
		t.Fatalf("ss: %v\n%s", err, out)
	}
	re := regexp.MustCompile(`127\.0\.0\.1:(\d+)\s+127\.0\.0\.1:` + port + `\s.*pid=` + fmt.Sprint(pid) + `,`)
	n := 0
	for _, m := range re.FindAllStringSubmatch(string(out), -1) {
		if out, err := exec.Command("ss", "-K", "state", "established", "sport", "= :"+m[1], "dport", "= :"+port).CombinedOutput(); err != nil {
			t.Fatalf("ss -K: %v\n%s", err, out)
		}
		n++
	}
	if n == 0 {
		t.Fatalf("process %d has no connection to the API server:\n%s", pid, out)
	}
	t.Logf("cut %d connections of kdap to the API server", n)
}

// TestKdapAttachNodeWithADAPClient is the path of a DAP client that
// connects itself (nvim-dap's "server" adapter): `kdap attach` prints the
// endpoint and the remoteRoot to map; the client attaches with localRoot
// and remoteRoot, as with js-debug, and gets one session.
func TestKdapAttachNodeWithADAPClient(t *testing.T) {
	ns := newNamespace(t, nil)
	createPod(t, ns, "web", fixtures.NodeHTTPImage)
	svc := podForward(t, ns, "web", fixtures.NodeHTTPPort)
	root, file, line := nodeJS.localCopy(t)
	cmd, addr, text := startKdapAttach(t, "pod/web", "-n", ns, "--image-node", fixtures.NodeAgentImage)
	if want := fmt.Sprintf(`"remoteRoot": %q`, fixtures.NodeSourceRoot); !strings.Contains(text, want) {
		t.Errorf("kdap attach printed %q, want it to name %s", text, want)
	}
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := daptest.NewClient(conn)
	c.Timeout = time.Minute
	c.ExpectResponse(t, c.Send("initialize", godap.InitializeRequestArguments{AdapterID: "pwa-node", LinesStartAt1: true, ColumnsStartAt1: true, PathFormat: "path"}))
	attach := c.Send("attach", map[string]any{"type": "pwa-node", "localRoot": root, "remoteRoot": fixtures.NodeSourceRoot})
	c.ExpectEvent(t, "initialized")
	bp := c.Send("setBreakpoints", godap.SetBreakpointsArguments{Source: godap.Source{Path: file}, Breakpoints: []godap.SourceBreakpoint{{Line: line}}})
	got := c.ExpectResponses(t, attach, bp, c.Send("configurationDone", nil))
	if !daptest.Verified(got[bp]) {
		t.Errorf("breakpoint not verified: %s", got[bp].Raw)
	}
	reply := getAsync(fmt.Sprintf("http://%s/quote?items=2", svc))
	thread, _ := expectStop(t, c, file, line)
	c.ExpectResponse(t, c.Send("continue", godap.ContinueArguments{ThreadId: thread}))
	expectReply(t, reply, "total: 14", 10*time.Second)
	c.ExpectResponse(t, c.Send("disconnect", godap.DisconnectArguments{}))
	conn.Close()
	interrupt(t, cmd, "kdap attach")
	expectReply(t, getAsync(fmt.Sprintf("http://%s/quote?items=1", svc)), "total: 7", 10*time.Second)
	expectInspectorClosed(t, ns, "web")
}

// TestNodeAgentAsAnotherUser: a debugger container that runs as a user
// other than the target's (a pod spec that names the wrong runAsUser) may
// neither read nor signal the target: it exits saying which user to set,
// and the service serves on.
func TestNodeAgentAsAnotherUser(t *testing.T) {
	ns := newNamespace(t, nil)
	createPod(t, ns, "web", fixtures.NodeHTTPImage)
	svc := podForward(t, ns, "web", fixtures.NodeHTTPPort)
	other := int64(1234)
	err := injectUntilExit(t, ns, "web", inject.Options{Image: fixtures.NodeAgentImage, Target: "app", Runtime: runtimes.Node.Name,
		Port: agentapi.DefaultPort, TTL: time.Minute, RunAsUser: &other, RunAsGroup: &other})
	for _, want := range []string{"the debugger runs as uid 1234 and the target as uid 65532", "set runAsUser 65532"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("agent as another user: %v; want an exit saying %q", err, want)
		}
	}
	expectReply(t, getAsync(fmt.Sprintf("http://%s/quote?items=1", svc)), "total: 7", 10*time.Second)
}
