//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	godap "github.com/google/go-dap"
	corev1 "k8s.io/api/core/v1"

	"github.com/kdap/kdap/agentapi"
	"github.com/kdap/kdap/dap/daptest"
	"github.com/kdap/kdap/inject"
	"github.com/kdap/kdap/test/fixtures"
)

// pyService runs the Python service in pod name and returns its forwarded
// address, a local copy of its sources and the breakpoint line in the helper.
func pyService(t *testing.T, ns, name string) (svc, root, pricing string, line int) {
	t.Helper()
	createPod(t, ns, name, fixtures.PyHTTPImage)
	logsOnFailure(t, ns, name)
	svc = serviceForward(t, ns, name)
	root, pricing = pyLocalCopy(t)
	return svc, root, pricing, lineOf(t, pricing, "total = items * unit")
}

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
	// A map, not godap.EvaluateArguments: js-debug numbers frames from 0,
	// which that struct's frameId would omit.
	r := c.ExpectResponse(t, c.Send("evaluate", map[string]any{"expression": expr, "frameId": frameID, "context": "repl"}))
	var body godap.EvaluateResponseBody
	daptest.Decode(t, r, &body)
	return body.Result
}

func TestPythonDebugThroughKdapDap(t *testing.T) {
	ns := newNamespace(t, nil)
	svc, root, pricing, line := pyService(t, ns, "pyhttp")
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

// TestGoAndPythonAtOnce debugs a Go and a Python service at the same time
// through one kdap process, "runtime" set explicitly.
func TestGoAndPythonAtOnce(t *testing.T) {
	ns := newNamespace(t, nil)
	createPod(t, ns, "gohttp", fixtures.GoHTTPImage)
	createPod(t, ns, "pyhttp", fixtures.PyHTTPImage)
	goSvc, pySvc := serviceForward(t, ns, "gohttp"), serviceForward(t, ns, "pyhttp")
	goRoot, mainGo := localCopy(t)
	pyRoot, pricing := pyLocalCopy(t)
	goLine, pyLine := lineOf(t, mainGo, "message := fmt.Sprintf"), lineOf(t, pricing, "total = items * unit")
	k := startKdap(t)

	g := attachSessionWith(t, k, map[string]any{"target": "pod/gohttp", "namespace": ns, "localRoot": goRoot, "runtime": "go"}, mainGo, goLine)
	p := attachSessionWith(t, k, map[string]any{"target": "pod/pyhttp", "namespace": ns, "localRoot": pyRoot, "runtime": "python"}, pricing, pyLine)
	goReply := getAsync(fmt.Sprintf("http://%s/hello?name=both", goSvc))
	pyReply := getAsync(fmt.Sprintf("http://%s/quote?items=2", pySvc))
	goThread, goFrame := expectStop(t, g, mainGo, goLine)
	pyThread, pyFrame := expectStop(t, p, pricing, pyLine)
	if got := locals(t, g, goFrame)["name"]; got != `"both"` {
		t.Errorf("Go session sees name=%s", got)
	}
	if got := locals(t, p, pyFrame)["items"]; got != "2" {
		t.Errorf("Python session sees items=%s", got)
	}
	p.ExpectResponse(t, p.Send("continue", godap.ContinueArguments{ThreadId: pyThread}))
	expectReply(t, pyReply, "total: 14", 10*time.Second)
	select {
	case r := <-goReply:
		t.Fatalf("the Go service answered while its session is stopped: %q", r)
	case <-time.After(500 * time.Millisecond):
	}
	g.ExpectResponse(t, g.Send("continue", godap.ContinueArguments{ThreadId: goThread}))
	expectReply(t, goReply, "hello, both", 10*time.Second)
}

// TestPythonErrorsNameTheFix: each way a Python attach fails gives an
// error that says what to do, and leaves the target serving.
func TestPythonErrorsNameTheFix(t *testing.T) {
	k := startKdap(t)
	for _, tc := range []struct {
		name  string
		pod   func(t *testing.T, ns string)
		args  map[string]any
		level string // PodSecurity level of the namespace
		want  []string
	}{
		{"PodSecurity baseline forbids SYS_PTRACE", func(t *testing.T, ns string) { createPod(t, ns, "target", fixtures.PyHTTPImage) },
			map[string]any{"runtime": "python"}, "baseline",
			[]string{`enforces PodSecurity "baseline"`, "SYS_PTRACE", "Python (debugpy)", "Set a non-root runAsUser", "pod-security.kubernetes.io/enforce=privileged"}},
		{"runtime python on a Go program", func(t *testing.T, ns string) { createPod(t, ns, "target", fixtures.GoHTTPImage) },
			map[string]any{"runtime": "python"}, "",
			[]string{"is a Go program, not Python", `set "runtime": "go"`}},
		{"runtime go on a Python program", func(t *testing.T, ns string) { createPod(t, ns, "target", fixtures.PyHTTPImage) },
			map[string]any{"runtime": "go"}, "",
			[]string{"is a Python program, not Go", `set "runtime": "python"`}},
		{"not a Python program at all", func(t *testing.T, ns string) { createPod(t, ns, "target", fixtures.NotGoImage) },
			map[string]any{"runtime": "python"}, "",
			[]string{"is not a Python program", "/notgo", `set "runtime"`}},
		{"debugpy already running", func(t *testing.T, ns string) {
			createPodWith(t, ns, "target", fixtures.PyHTTPImage, func(p *corev1.Pod) {
				p.Spec.Containers[0].Command = []string{"/usr/bin/python3", fixtures.PyHTTPSourceRoot + "/others/debugpy/adapter", "--host", "127.0.0.1", "--port", "5678"}
			})
		}, map[string]any{"runtime": "python"}, "",
			[]string{"debugpy is already running in this pod", "127.0.0.1:5678", "connect your IDE to that adapter"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var labels map[string]string
			if tc.level != "" {
				labels = map[string]string{"pod-security.kubernetes.io/enforce": tc.level}
			}
			ns := newNamespace(t, labels)
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
			if p.Status.Phase != corev1.PodRunning || p.Status.ContainerStatuses[0].RestartCount != 0 {
				t.Errorf("target pod after the failed attach: %+v", p.Status.ContainerStatuses)
			}
		})
	}
}

// TestPythonAgentWithoutPtrace: an agent that may not ptrace the target
// (no SYS_PTRACE, another user) exits saying so, and the service serves on.
func TestPythonAgentWithoutPtrace(t *testing.T) {
	ns := newNamespace(t, nil)
	createPod(t, ns, "pyhttp", fixtures.PyHTTPImage)
	svc := serviceForward(t, ns, "pyhttp")
	err := injectUntilExit(t, ns, "pyhttp", inject.Options{Image: fixtures.PythonAgentImage, Target: "app", Runtime: "python", Port: agentapi.DefaultPort, TTL: time.Minute, Ptrace: false})
	if err == nil || !strings.Contains(err.Error(), "SYS_PTRACE") {
		t.Fatalf("agent without SYS_PTRACE: %v; want an exit naming SYS_PTRACE", err)
	}
	t.Logf("agent without SYS_PTRACE: %v", err)
	expectReply(t, getAsync(fmt.Sprintf("http://%s/quote?items=1", svc)), "total: 7", 10*time.Second)
}

// injectUntilExit injects an agent with opts into pod (as kdap would not:
// the test chooses its privileges) and returns how it exited within 30 s
// of running (nil if it still runs).
func injectUntilExit(t *testing.T, ns, pod string, opts inject.Options) error {
	t.Helper()
	ctx := context.Background()
	p := getPod(t, ns, pod)
	name := inject.NewName(p, func() string { return "manual" })
	if err := inject.Add(ctx, env.clientset, p, inject.Container(name, opts)); err != nil {
		t.Fatal(err)
	}
	err := inject.WaitRunning(ctx, env.clientset, ns, pod, name, time.Minute)
	for deadline := time.Now().Add(30 * time.Second); err == nil && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		err = inject.CheckAlive(ctx, env.clientset, ns, pod, name)
	}
	return err
}

// TestPythonAdapterOutlivesTheAgent: after the agent's idle TTL, the next
// agent finds the adapter debugpy started and reuses it (a second
// injection would end the first debugpy); breakpoints still work.
func TestPythonAdapterOutlivesTheAgent(t *testing.T) {
	ns := newNamespace(t, nil)
	svc, root, pricing, line := pyService(t, ns, "pyhttp")
	k := startKdap(t)
	c := attachSessionWith(t, k, map[string]any{"target": "pyhttp", "namespace": ns, "localRoot": root, "agentTTL": "2s"}, pricing, line)
	c.ExpectResponse(t, c.Send("disconnect", godap.DisconnectArguments{}))
	waitAgentCompleted(t, ns, "pyhttp")
	expectReply(t, getAsync(fmt.Sprintf("http://%s/quote?items=4", svc)), "total: 28", 10*time.Second)

	c2 := attachSession(t, k, ns, "pyhttp", root, pricing, line)
	p := getPod(t, ns, "pyhttp")
	if len(p.Spec.EphemeralContainers) != 2 {
		t.Fatalf("%d ephemeral containers, want 2 (the finished one stays, a new one runs)", len(p.Spec.EphemeralContainers))
	}
	var newest string // the pod spec lists the newest ephemeral container first
	for _, st := range p.Status.EphemeralContainerStatuses {
		if st.State.Running != nil {
			newest = st.Name
		}
	}
	if log := podLogs(t, ns, "pyhttp", newest); !strings.Contains(log, "reusing debugpy's adapter") || strings.Contains(log, "debugpy injected") {
		t.Errorf("the second agent did not reuse the adapter; its log:\n%s", log)
	}
	reply := getAsync(fmt.Sprintf("http://%s/quote?items=6", svc))
	thread, _ := expectStop(t, c2, pricing, line)
	c2.ExpectResponse(t, c2.Send("continue", godap.ContinueArguments{ThreadId: thread}))
	expectReply(t, reply, "total: 42", 10*time.Second)
}

// TestAttachAsTheTargetUserUnderBaseline: when the pod spec says which user
// the target runs as, the agent runs as that user without SYS_PTRACE, so a
// namespace enforcing PodSecurity baseline allows it — Go and Python.
func TestAttachAsTheTargetUserUnderBaseline(t *testing.T) {
	ns := newNamespace(t, map[string]string{"pod-security.kubernetes.io/enforce": "baseline"})
	asUser := func(p *corev1.Pod) {
		uid := int64(65532)
		p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: &uid, RunAsGroup: &uid}
	}
	createPodWith(t, ns, "gohttp", fixtures.GoHTTPImage, asUser)
	createPodWith(t, ns, "pyhttp", fixtures.PyHTTPImage, asUser)
	logsOnFailure(t, ns, "pyhttp")
	goSvc, pySvc := serviceForward(t, ns, "gohttp"), serviceForward(t, ns, "pyhttp")
	goRoot, mainGo := localCopy(t)
	pyRoot, pricing := pyLocalCopy(t)
	goLine, pyLine := lineOf(t, mainGo, "message := fmt.Sprintf"), lineOf(t, pricing, "total = items * unit")
	k := startKdap(t)

	g := attachSession(t, k, ns, "pod/gohttp", goRoot, mainGo, goLine)
	p := attachSession(t, k, ns, "pod/pyhttp", pyRoot, pricing, pyLine)
	for _, pod := range []string{"gohttp", "pyhttp"} {
		sc := getPod(t, ns, pod).Spec.EphemeralContainers[0].SecurityContext
		if sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != 65532 || sc.Capabilities == nil || len(sc.Capabilities.Add) != 0 {
			t.Errorf("%s: agent security context %+v, want uid 65532 and no capability added", pod, sc)
		}
	}
	goReply := getAsync(fmt.Sprintf("http://%s/hello?name=baseline", goSvc))
	pyReply := getAsync(fmt.Sprintf("http://%s/quote?items=3", pySvc))
	goThread, _ := expectStop(t, g, mainGo, goLine)
	pyThread, _ := expectStop(t, p, pricing, pyLine)
	g.ExpectResponse(t, g.Send("continue", godap.ContinueArguments{ThreadId: goThread}))
	p.ExpectResponse(t, p.Send("continue", godap.ContinueArguments{ThreadId: pyThread}))
	expectReply(t, goReply, "hello, baseline", 10*time.Second)
	expectReply(t, pyReply, "total: 21", 10*time.Second)
}
