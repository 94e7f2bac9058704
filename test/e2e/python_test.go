//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	godap "github.com/google/go-dap"

	"github.com/kdap/kdap/dap/daptest"
	"github.com/kdap/kdap/test/fixtures"
)

// pyLocalCopy puts the Python service's sources under a fresh directory, as
// an IDE workspace whose path differs from the one in the image.
func pyLocalCopy(t testing.TB) (root, pricing string) {
	t.Helper()
	root = filepath.Join(t.TempDir(), "workspace", "pyhttp")
	src := filepath.Join(env.repo, "test", "fixtures", "pyhttp")
	for _, f := range []string{"server.py", "shop/__init__.py", "shop/pricing.py"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Dir(filepath.Join(root, f)), 0o755)
		if err := os.WriteFile(filepath.Join(root, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root, filepath.Join(root, "shop", "pricing.py")
}

// evaluate runs expr in a frame and returns the result.
func evaluate(t *testing.T, c *daptest.Client, frameID int, expr string) string {
	t.Helper()
	r := c.ExpectResponse(t, c.Send("evaluate", godap.EvaluateArguments{Expression: expr, FrameId: frameID, Context: "repl"}))
	var body godap.EvaluateResponseBody
	daptest.Decode(t, r, &body)
	return body.Result
}

func TestPythonDebugThroughKdapDap(t *testing.T) {
	ns := newNamespace(t, nil)
	createPod(t, ns, "pyhttp", fixtures.PyHTTPImage)
	logsOnFailure(t, ns, "pyhttp")
	svc := serviceForward(t, ns, "pyhttp")
	root, pricing := pyLocalCopy(t)
	line := lineOf(t, pricing, "total = items * unit")
	k := startKdap(t)

	// "runtime" left out: kdap guesses Python from the image name.
	c := attachSession(t, k, ns, "pod/pyhttp", root, pricing, line)
	reply := getAsync(fmt.Sprintf("http://%s/quote?items=3", svc))
	thread, frame := expectStop(t, c, pricing, line)
	vars := locals(t, c, frame)
	if vars["items"] != "3" || vars["unit"] != "7" {
		t.Errorf("locals items=%q unit=%q, want 3 and 7 (all: %v)", vars["items"], vars["unit"], vars)
	}
	if got := evaluate(t, c, frame, "items * unit + 1"); got != "22" {
		t.Errorf("evaluate items * unit + 1 = %q, want 22", got)
	}
	c.ExpectResponse(t, c.Send("continue", godap.ContinueArguments{ThreadId: thread}))
	expectReply(t, reply, "total: 21", 10*time.Second)

	// Disconnect without clearing the breakpoint: the service must not stop again.
	c.ExpectResponse(t, c.Send("disconnect", godap.DisconnectArguments{}))
	for i := 0; i < 3; i++ {
		took := expectReply(t, getAsync(fmt.Sprintf("http://%s/quote?items=%d", svc, i)), fmt.Sprintf("total: %d", 7*i), 10*time.Second)
		t.Logf("request %d after disconnect answered in %s", i+1, took.Round(time.Millisecond))
	}

	// A second session reuses the agent and the adapter debugpy started.
	c2 := attachSession(t, k, ns, "pod/pyhttp", root, pricing, line)
	if n := ephemeralCount(t, ns, "pyhttp"); n != 1 {
		t.Errorf("%d ephemeral containers after the second attach, want 1 (reuse)", n)
	}
	reply = getAsync(fmt.Sprintf("http://%s/quote?items=5", svc))
	expectStop(t, c2, pricing, line)
	if log := agentLog(t, ns, "pyhttp"); strings.Count(log, "debugpy injected into pid") != 1 {
		t.Errorf("debugpy was not injected exactly once; agent log:\n%s", log)
	}

	// kdap is SIGKILLed while the target is stopped: debugpy releases it.
	killed := time.Now()
	k.cmd.Process.Kill()
	took := expectReply(t, reply, "total: 35", 30*time.Second)
	t.Logf("stopped request answered %s after kdap was SIGKILLed (%s after the kill)", took.Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))
	expectReply(t, getAsync(fmt.Sprintf("http://%s/quote?items=1", svc)), "total: 7", 10*time.Second)
}

// logsOnFailure logs every container's log of the pod if the test fails.
func logsOnFailure(t *testing.T, ns, pod string) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		p := getPod(t, ns, pod)
		names := []string{}
		for _, c := range p.Spec.Containers {
			names = append(names, c.Name)
		}
		for _, c := range p.Spec.EphemeralContainers {
			names = append(names, c.Name)
		}
		for _, n := range names {
			t.Logf("log of %s/%s[%s]:\n%s", ns, pod, n, podLogs(t, ns, pod, n))
		}
	})
}

// agentLog is the log of the pod's (only) kdap agent.
func agentLog(t *testing.T, ns, pod string) string {
	t.Helper()
	p := getPod(t, ns, pod)
	if len(p.Spec.EphemeralContainers) == 0 {
		t.Fatalf("pod %s/%s has no agent", ns, pod)
	}
	return podLogs(t, ns, pod, p.Spec.EphemeralContainers[0].Name)
}
