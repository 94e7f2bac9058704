//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	godap "github.com/google/go-dap"
	corev1 "k8s.io/api/core/v1"

	"github.com/kdap/kdap/attach"
	"github.com/kdap/kdap/test/fixtures"
)

// TestTwoSessionsAtOnce: one kdap process, two IDE sessions on two pods,
// both stopped at a breakpoint at the same time, each released on its own.
func TestTwoSessionsAtOnce(t *testing.T) {
	ns := newNamespace(t, nil)
	root, mainGo := localCopy(t)
	line := lineOf(t, mainGo, "message := fmt.Sprintf")
	k := startKdap(t)
	type svc struct {
		name, addr string
	}
	var svcs []svc
	for _, name := range []string{"orders", "billing"} {
		createPod(t, ns, name, fixtures.GoHTTPImage)
		svcs = append(svcs, svc{name, serviceForward(t, ns, name)})
	}
	a := attachSession(t, k, ns, "pod/orders", root, mainGo, line)
	b := attachSession(t, k, ns, "pod/billing", root, mainGo, line)
	replyA := getAsync(fmt.Sprintf("http://%s/hello?name=orders", svcs[0].addr))
	replyB := getAsync(fmt.Sprintf("http://%s/hello?name=billing", svcs[1].addr))
	_, frameA := expectStop(t, a, mainGo, line)
	_, frameB := expectStop(t, b, mainGo, line)
	if got := locals(t, a, frameA)["name"]; got != `"orders"` {
		t.Errorf("session on orders sees name=%s", got)
	}
	if got := locals(t, b, frameB)["name"]; got != `"billing"` {
		t.Errorf("session on billing sees name=%s", got)
	}
	// Releasing one leaves the other stopped.
	a.ExpectResponse(t, a.Send("continue", godap.ContinueArguments{}))
	expectReply(t, replyA, "hello, orders", 10*time.Second)
	select {
	case r := <-replyB:
		t.Fatalf("billing answered while its session is stopped: %q", r)
	case <-time.After(500 * time.Millisecond):
	}
	b.ExpectResponse(t, b.Send("continue", godap.ContinueArguments{}))
	expectReply(t, replyB, "hello, billing", 10*time.Second)
}

// TestTargetsThatNeedNoConfiguration: the agent finds the target when the
// pod shares its PID namespace (PID 1 is then the pause process), and a
// -trimpath binary (sources recorded as module paths) maps to the local
// files without substitutePath.
func TestTargetsThatNeedNoConfiguration(t *testing.T) {
	yes := true
	for _, tc := range []struct {
		name, image string
		edit        func(*corev1.Pod)
	}{
		{"shared PID namespace", fixtures.GoHTTPImage, func(p *corev1.Pod) { p.Spec.ShareProcessNamespace = &yes }},
		{"trimpath build", fixtures.TrimpathImage, func(*corev1.Pod) {}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := newNamespace(t, nil)
			createPodWith(t, ns, "web", tc.image, tc.edit)
			root, mainGo := localCopy(t)
			line := lineOf(t, mainGo, "message := fmt.Sprintf")
			k := startKdap(t)
			c := attachSession(t, k, ns, "pod/web", root, mainGo, line)
			reply := getAsync(fmt.Sprintf("http://%s/hello?name=web", serviceForward(t, ns, "web")))
			expectStop(t, c, mainGo, line)
			c.ExpectResponse(t, c.Send("continue", godap.ContinueArguments{}))
			expectReply(t, reply, "hello, web", 10*time.Second)
		})
	}
}

// TestIdleAgentExitsAndIsReplaced: with agentTTL 2s the agent detaches and
// its container ends (Completed) while the target serves on; the next
// attach injects a new agent instead of reusing the dead one.
func TestIdleAgentExitsAndIsReplaced(t *testing.T) {
	ns := newNamespace(t, nil)
	createPod(t, ns, "web", fixtures.GoHTTPImage)
	svc := serviceForward(t, ns, "web")
	k := startKdap(t)
	c := k.connect(t)
	c.ExpectResponse(t, c.Send("initialize", godap.InitializeRequestArguments{AdapterID: "kdap", LinesStartAt1: true, ColumnsStartAt1: true, PathFormat: "path"}))
	c.ExpectResponse(t, c.Send("attach", map[string]any{"target": "web", "namespace": ns, "agentTTL": "2s"}))
	c.ExpectResponse(t, c.Send("disconnect", godap.DisconnectArguments{}))
	waitAgentCompleted(t, ns, "web")
	expectReply(t, getAsync(fmt.Sprintf("http://%s/hello?name=idle", svc)), "hello, idle", 10*time.Second)
	c2 := k.connect(t)
	c2.ExpectResponse(t, c2.Send("initialize", godap.InitializeRequestArguments{AdapterID: "kdap", LinesStartAt1: true, ColumnsStartAt1: true, PathFormat: "path"}))
	c2.ExpectResponse(t, c2.Send("attach", map[string]any{"target": "web", "namespace": ns}))
	if n := ephemeralCount(t, ns, "web"); n != 2 {
		t.Errorf("%d ephemeral containers, want 2 (the finished one stays, a new one runs)", n)
	}
}

// TestTargetsListsContainersWithTheirRuntime runs `kdap targets -o json`, as
// the VS Code extension's picker does.
func TestTargetsListsContainersWithTheirRuntime(t *testing.T) {
	ns := newNamespace(t, nil)
	createPod(t, ns, "gohttp", fixtures.GoHTTPImage)
	createPod(t, ns, "pyhttp", fixtures.PyHTTPImage)
	out, err := exec.Command(env.kdap, "targets", "-n", ns, "-o", "json", "--kubeconfig", env.cluster.Kubeconfig()).Output()
	if err != nil {
		t.Fatalf("kdap targets: %v\n%s", err, out)
	}
	var got []attach.Target
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("kdap targets -o json printed %s: %v", out, err)
	}
	want := []attach.Target{
		{Namespace: ns, Pod: "gohttp", Container: "app", Image: fixtures.GoHTTPImage, Runtime: "go", Default: true},
		{Namespace: ns, Pod: "pyhttp", Container: "app", Image: fixtures.PyHTTPImage, Runtime: "python", Default: true},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("kdap targets (-want +got):\n%s", diff)
	}
}

// waitAgentCompleted waits until the pod's agent has exited cleanly (its
// idle TTL), failing on any other exit.
func waitAgentCompleted(t *testing.T, ns, pod string) {
	t.Helper()
	waitPod(t, ns, pod, time.Minute, "with its agent Completed", func(p *corev1.Pod) (bool, error) {
		for _, st := range p.Status.EphemeralContainerStatuses {
			if term := st.State.Terminated; term != nil {
				if term.ExitCode != 0 {
					return false, fmt.Errorf("agent ended with exit code %d: %s", term.ExitCode, term.Message)
				}
				return true, nil
			}
		}
		return false, nil
	})
}
