//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	godap "github.com/google/go-dap"
	corev1 "k8s.io/api/core/v1"

	"github.com/kdap/kdap/agentapi"
	"github.com/kdap/kdap/test/fixtures"
)

// attempt is one port the intruder tried (test/fixtures/probe's Attempt).
type attempt struct {
	Port  int    `json:"port"`
	DAP   bool   `json:"dap"`
	JDWP  bool   `json:"jdwp"`
	Reply string `json:"reply"`
}

func TestAnotherContainerCannotDebugGo(t *testing.T)   { testIntruder(t, goStaging) }
func TestAnotherContainerCannotDebugJava(t *testing.T) { testIntruder(t, javaStaging) }

// testIntruder: another container of the target's pod (the probe fixture,
// as root) tries every port listening on the pod's loopback as a debugger
// client would — a DAP initialize, a JDWP handshake — while kdap's session
// holds the target at a breakpoint, and again after it: nothing answers.
// The agent's port answers only its challenge, and the debuggers behind it
// (Delve, the Java debug server) serve on Unix sockets in the agent's own
// file system.
func testIntruder(t *testing.T, service func(testing.TB) (string, stagingService)) {
	root, s := service(t)
	ns := newNamespace(t, nil)
	s.servicePod(t, ns, "web", func(p *corev1.Pod) {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "intruder", Image: fixtures.ProbeImage, ImagePullPolicy: corev1.PullNever})
	})
	svc := podForward(t, ns, "web", s.port)
	intruder := podForward(t, ns, "web", 7777)
	k := startKdap(t)
	c := attachSessionWith(t, k, map[string]any{"target": "pod/web", "container": "app", "namespace": ns, "localRoot": root, "runtime": s.runtime}, s.file, s.line)

	reply := getAsync("http://" + svc + s.request(3))
	thread, _ := expectStop(t, c, s.file, s.line)
	expectNoDebugger(t, intruder, "while the session holds the target")
	c.ExpectResponse(t, c.Send("continue", godap.ContinueArguments{ThreadId: thread}))
	expectReply(t, reply, s.reply(3), 20*time.Second)
	c.ExpectResponse(t, c.Send("disconnect", godap.DisconnectArguments{}))
	time.Sleep(time.Second) // the agent releases the target
	expectNoDebugger(t, intruder, "after the session (the agent idles)")
	if log := podLogs(t, ns, "web", agentName(t, ns)); !strings.Contains(log, "refused client") {
		t.Errorf("the agent's log tells of no refused client:\n%s", log)
	}
}

// expectNoDebugger asks the intruder to try every loopback port, and fails
// if one served it a debugger session; the agent's port must have been
// among those tried.
func expectNoDebugger(t *testing.T, intruder, when string) {
	t.Helper()
	resp, err := http.Get("http://" + intruder + "/intrude")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tried []attempt
	if err := json.NewDecoder(resp.Body).Decode(&tried); err != nil {
		t.Fatal(err)
	}
	sawAgent := false
	var ports []string
	for _, a := range tried {
		ports = append(ports, fmt.Sprint(a.Port))
		if a.DAP || a.JDWP {
			t.Errorf("%s: another container got a debugger on 127.0.0.1:%d (DAP %v, JDWP %v): %q", when, a.Port, a.DAP, a.JDWP, a.Reply)
		}
		if a.Port == agentapi.DefaultPort {
			sawAgent = true
			if !strings.HasPrefix(a.Reply, agentapi.ChallengePrefix) {
				t.Errorf("%s: the agent answered the intruder %q, want its challenge", when, a.Reply)
			}
		}
	}
	t.Logf("%s: the intruder tried ports %s", when, strings.Join(ports, ", "))
	if !sawAgent {
		t.Errorf("%s: the intruder did not find the agent's port %d among %v", when, agentapi.DefaultPort, ports)
	}
}

// agentName is the name of the pod web's one debugger container.
func agentName(t *testing.T, ns string) string {
	t.Helper()
	pod := getPod(t, ns, "web")
	if len(pod.Spec.EphemeralContainers) != 1 {
		t.Fatalf("%d debugger containers, want 1", len(pod.Spec.EphemeralContainers))
	}
	return pod.Spec.EphemeralContainers[0].Name
}

// TestPythonSaysWhatItLeavesOpen: debugpy's adapter cannot be guarded or
// closed, so the IDE is told at attach what it leaves open.
func TestPythonSaysWhatItLeavesOpen(t *testing.T) {
	root, s := pyStaging(t)
	ns := newNamespace(t, nil)
	s.servicePod(t, ns, "web", func(*corev1.Pod) {})
	k := startKdap(t)
	c := attachSessionWith(t, k, map[string]any{"target": "pod/web", "namespace": ns, "localRoot": root, "runtime": s.runtime}, s.file, s.line)
	if console := c.Console(); !strings.Contains(console, "kdap: warning: debugpy's adapter listens on the pod's loopback") {
		t.Errorf("the console does not tell of debugpy's adapter:\n%s", console)
	}
	c.ExpectResponse(t, c.Send("disconnect", godap.DisconnectArguments{}))
}

// TestDAPOnAUnixSocketWithAToken: kdap dap serves on a Unix socket of its
// user's alone, and with --token-file refuses an attach without the token
// before it touches the cluster; with the token the session works.
func TestDAPOnAUnixSocketWithAToken(t *testing.T) {
	root, s := goStaging(t)
	ns := newNamespace(t, nil)
	s.servicePod(t, ns, "web", func(*corev1.Pod) {})
	dir := t.TempDir()
	sock, tokenFile := filepath.Join(dir, "kdap.sock"), filepath.Join(dir, "token")
	k := startKdap(t, "--listen", "unix:"+sock, "--token-file", tokenFile)
	if k.addr != "unix:"+sock {
		t.Fatalf("kdap listens at %s, want unix:%s", k.addr, sock)
	}
	for file, want := range map[string]os.FileMode{sock: 0o600, tokenFile: 0o600} {
		if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v, %v; want mode %v", file, fi.Mode(), err, want)
		}
	}
	token, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	args := map[string]any{"target": "pod/web", "namespace": ns, "localRoot": root, "runtime": s.runtime}
	for _, tc := range []struct{ token, want string }{{"", `has no "token"`}, {"not-it", `has the wrong "token"`}} {
		c := k.connect(t)
		c.ExpectResponse(t, c.Send("initialize", godap.InitializeRequestArguments{AdapterID: "kdap", LinesStartAt1: true, ColumnsStartAt1: true, PathFormat: "path"}))
		args["token"] = tc.token
		resp := c.ExpectAnyResponse(t, c.Send("attach", args))
		if resp.Success || !strings.Contains(resp.ErrorText(), tc.want) || !strings.Contains(resp.ErrorText(), "--token-file") {
			t.Errorf("attach with token %q: %s; want %q", tc.token, resp.Raw, tc.want)
		}
	}
	if n := ephemeralCount(t, ns, "web"); n != 0 {
		t.Errorf("refused attaches added %d containers", n)
	}
	args["token"] = strings.TrimSpace(string(token))
	c := attachSessionWith(t, k, args, s.file, s.line)
	c.ExpectResponse(t, c.Send("disconnect", godap.DisconnectArguments{}))
}
