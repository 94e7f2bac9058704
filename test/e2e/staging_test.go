//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	godap "github.com/google/go-dap"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kdap/kdap/dap"
	"github.com/kdap/kdap/dap/daptest"
	"github.com/kdap/kdap/runtimes"
	"github.com/kdap/kdap/test/fixtures"
)

// stagingService is one runtime's service as the staging tests use it: a
// breakpoint line with its locals, a logpoint line, a request that hits
// them and the reply it gets, and how its pod is made and probed.
type stagingService struct {
	image   string
	ready   string   // what the service logs once it serves
	probe   []string // an exec probe: GETs the service on the pod's loopback
	port    int
	runtime string
	// pod creates the service's pod with edit applied (default: createPodWith).
	pod           func(t *testing.T, ns, name string, edit func(*corev1.Pod))
	file          string
	line, logLine int
	local         string // a local at line, and its value for request(n)
	localValue    func(n int) string
	logMessage    string // at logLine
	logged        func(n int) string
	condition     string // true for even n
	request       func(n int) string
	reply         func(n int) string
}

func goStaging(t testing.TB) (root string, s stagingService) {
	root, mainGo := localCopy(t)
	return root, stagingService{
		image: fixtures.GoHTTPImage, ready: "gohttp listening", port: fixtures.GoHTTPPort, runtime: "go", probe: []string{"/gohttp", "-probe", "http://127.0.0.1:8080/busy"}, file: mainGo,
		line: lineOf(t, mainGo, "message := fmt.Sprintf"), logLine: lineOf(t, mainGo, "return message"),
		local: "name", localValue: func(n int) string { return fmt.Sprintf("%q", fmt.Sprintf("n%d", n)) },
		logMessage: "greeting {name}", logged: func(n int) string { return fmt.Sprintf(`greeting "n%d"`, n) },
		condition: "count % 2 == 0", // count is the request's number: the n of the tests' requests
		request:   func(n int) string { return fmt.Sprintf("/hello?name=n%d", n) },
		reply:     func(n int) string { return fmt.Sprintf("hello, n%d", n) },
	}
}

func pyStaging(t testing.TB) (root string, s stagingService) {
	root, pricing := pyLocalCopy(t)
	return root, stagingService{
		image: fixtures.PyHTTPImage, ready: "serving on", port: fixtures.GoHTTPPort, runtime: "python", probe: []string{"python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/busy', timeout=30)"}, file: pricing,
		line: lineOf(t, pricing, "total = items * unit"), logLine: lineOf(t, pricing, "return total"),
		local: "items", localValue: func(n int) string { return fmt.Sprint(n) },
		logMessage: "quote {total}", logged: func(n int) string { return fmt.Sprintf("quote %d", 7*n) },
		condition: "items % 2 == 0",
		request:   func(n int) string { return fmt.Sprintf("/quote?items=%d", n) },
		reply:     func(n int) string { return fmt.Sprintf("total: %d", 7*n) },
	}
}

func nodeStaging(t testing.TB) (root string, s stagingService) {
	root, pricing, line := nodeJS.localCopy(t)
	return root, stagingService{
		image: fixtures.NodeHTTPImage, ready: "nodehttp listening", port: fixtures.NodeHTTPPort, runtime: "node",
		probe: []string{"/usr/local/bin/node", "-e", "require('http').get('http://127.0.0.1:3000/busy', r => process.exit(r.statusCode === 200 ? 0 : 1)).on('error', () => process.exit(1))"},
		file:  pricing, line: line, logLine: lineOf(t, pricing, "return total"),
		local: "items", localValue: func(n int) string { return fmt.Sprint(n) },
		logMessage: "quote {total}", logged: func(n int) string { return fmt.Sprintf("quote %d", 7*n) },
		condition: "items % 2 === 0",
		request:   func(n int) string { return fmt.Sprintf("/quote?items=%d", n) },
		reply:     func(n int) string { return fmt.Sprintf("total: %d", 7*n) },
	}
}

// javaStaging has no probe: an exec probe would start a JVM every 2 s.
func javaStaging(t testing.TB) (root string, s stagingService) {
	src := javaLocalCopy(t)
	return src.root, stagingService{
		image: fixtures.JavaHTTPImage, ready: "javahttp listening", port: fixtures.JavaHTTPPort, runtime: "java",
		pod: func(t *testing.T, ns, name string, edit func(*corev1.Pod)) {
			createPodWith(t, ns, name, fixtures.JavaHTTPImage, func(p *corev1.Pod) {
				p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "JAVA_TOOL_OPTIONS", Value: runtimes.JDWPFlag(17)}}
				edit(p)
			})
		},
		file: src.pricing, line: lineOf(t, src.pricing, javaQuoteLine), logLine: lineOf(t, src.pricing, "quoted += total;"),
		local: "items", localValue: func(n int) string { return fmt.Sprint(n) },
		logMessage: "quote {total}", logged: func(n int) string { return fmt.Sprintf("quote %d", 7*n) },
		condition: "items % 2 == 0",
		request:   func(n int) string { return fmt.Sprintf("/quote?items=%d", n) },
		reply:     func(n int) string { return fmt.Sprintf("total: %d", 7*n) },
	}
}

// servicePod creates the service's pod, edited, and waits until it serves.
func (s stagingService) servicePod(t *testing.T, ns, name string, edit func(*corev1.Pod)) {
	t.Helper()
	if s.pod != nil {
		s.pod(t, ns, name, edit)
	} else {
		createPodWith(t, ns, name, s.image, edit)
	}
	logsOnFailure(t, ns, name)
	waitLog(t, ns, name, s.ready)
}

// probedPod creates the service's pod with a liveness probe every 2 s,
// 2 s timeout, 3 failures: a stop may last about 6 s, and "stopLimit":
// "auto" ends it at 3.5 s. The probe is an exec probe that asks the service
// on the pod's loopback (the kubelet's HTTP probes dial the pod IP, which
// nothing here may) and waits, like an HTTP probe, until the kubelet's
// timeout fails it.
func probedPod(t *testing.T, ns, name string, s stagingService) {
	s.servicePod(t, ns, name, func(p *corev1.Pod) {
		p.Spec.Containers[0].LivenessProbe = &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: s.probe}},
			PeriodSeconds: 2, TimeoutSeconds: 2, FailureThreshold: 3,
		}
	})
}

func restartCount(t *testing.T, ns, pod string) int32 {
	t.Helper()
	p, err := env.clientset.CoreV1().Pods(ns).Get(context.Background(), pod, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p.Status.ContainerStatuses[0].RestartCount
}

// output matches an output event whose text contains want, in category
// ("" for any).
func output(category, want string) func(*dap.Message) bool {
	return func(m *dap.Message) bool {
		var body godap.OutputEventBody
		return m.Type == "event" && m.Event == "output" && json.Unmarshal(m.Body(), &body) == nil &&
			(category == "" || body.Category == category) && strings.Contains(body.Output, want)
	}
}

func TestStagingStopLimitGo(t *testing.T) {
	root, s := goStaging(t)
	testStopLimit(t, root, s)
}

func TestStagingStopLimitPython(t *testing.T) {
	root, s := pyStaging(t)
	testStopLimit(t, root, s)
}

func TestStagingStopLimitNode(t *testing.T) {
	root, s := nodeStaging(t)
	testStopLimit(t, root, s)
}

// testStopLimit: with the default stopLimit the stop ends before the
// probe fails three times and the container is not restarted; with
// "stopLimit": "off" it is, and the session says the kubelet restarted it.
func testStopLimit(t *testing.T, root string, s stagingService) {
	ns := newNamespace(t, nil)
	probedPod(t, ns, "web", s)
	svc := podForward(t, ns, "web", s.port)
	k := startKdap(t)
	args := map[string]any{"target": "pod/web", "namespace": ns, "localRoot": root, "runtime": s.runtime}

	c := attachSessionWith(t, k, args, s.file, s.line)
	said(t, c, "a stop at a breakpoint may last about 6s before the kubelet restarts container app")
	t.Logf("restarts after attach: %d", restartCount(t, ns, "web"))
	setBreakpoints(t, c, s.file, map[string]any{"line": s.line}, map[string]any{"line": s.logLine, "logMessage": s.logMessage})
	reply := getAsync("http://" + svc + s.request(3))
	stoppedAt := time.Now()
	expectStop(t, c, s.file, s.line)
	c.Expect(t, "the warning as the limit nears", output("important", "kdap resumes it at 3.5s"))
	c.ExpectEvent(t, "continued")
	c.Expect(t, "the stop limit's resumption", output("important", "resumed the target after 3."))
	expectReply(t, reply, s.reply(3), 10*time.Second)
	t.Logf("stopped %s in all, resumed by the stop limit", time.Since(stoppedAt).Round(100*time.Millisecond))
	expectSaid(t, c, s.logged(3)) // the logpoint, in stop mode
	time.Sleep(8 * time.Second)   // four more probes: they pass
	if n := restartCount(t, ns, "web"); n != 0 {
		t.Fatalf("the container restarted %d times under the stop limit", n)
	}
	c.ExpectResponse(t, c.Send("disconnect", godap.DisconnectArguments{}))

	args["stopLimit"] = "off"
	c = attachSessionWith(t, k, args, s.file, s.line)
	said(t, c, `and "stopLimit": "off" lets it`)
	reply = getAsync("http://" + svc + s.request(4))
	thread, _ := expectStop(t, c, s.file, s.line)
	c.Expect(t, "the warning as the restart nears", output("important", "continue now to keep it"))
	lost := c.Expect(t, "the restart, told truthfully", func(m *dap.Message) bool {
		return output("stderr", "lost the connection to the debugger")(m) || output("", "resumed")(m)
	})
	var body godap.OutputEventBody
	daptest.Decode(t, lost, &body)
	t.Logf("told: %s", body.Output)
	if !strings.Contains(body.Output, "failed liveness probe") || strings.Contains(body.Output, "keeps running") {
		t.Errorf("the session's end does not say the kubelet restarted the container for its liveness probe: %q", body.Output)
	}
	c.Poll(func(m *dap.Message) bool { return m.Event == "terminated" }, 5*time.Second)
	if !strings.Contains(strings.Join(c.Recent(), "\n"), `"event":"terminated"`) {
		t.Errorf("the IDE was not told the session ended (terminated)")
	}
	c.Send("continue", godap.ContinueArguments{ThreadId: thread}) // too late: the session has ended
	<-reply
	waitPod(t, ns, "web", 60*time.Second, "restarted", func(p *corev1.Pod) (bool, error) {
		return p.Status.ContainerStatuses[0].RestartCount > 0, nil
	})
}

func TestStagingSnapshotsGo(t *testing.T) {
	root, s := goStaging(t)
	testSnapshots(t, root, s)
}

func TestStagingSnapshotsPython(t *testing.T) {
	root, s := pyStaging(t)
	testSnapshots(t, root, s)
}

func TestStagingSnapshotsNode(t *testing.T) {
	root, s := nodeStaging(t)
	testSnapshots(t, root, s)
}

func TestStagingSnapshotsJava(t *testing.T) {
	root, s := javaStaging(t)
	testSnapshots(t, root, s)
}

// testSnapshots: in a namespace annotated snapshot-only, a stopping
// session is refused naming the annotation; a session there takes a
// snapshot per hit (locals included) and never holds a request longer
// than the capture; a condition is respected; a logpoint prints; the
// session leaves Events on the pod and kdap sessions lists the agent.
func testSnapshots(t *testing.T, root string, s stagingService) {
	ns := newNamespace(t, nil)
	nsObj, err := env.clientset.CoreV1().Namespaces().Get(context.Background(), ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nsObj.Annotations = map[string]string{"kdap.dev/mode": "snapshot"}
	if _, err := env.clientset.CoreV1().Namespaces().Update(context.Background(), nsObj, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	s.servicePod(t, ns, "web", func(*corev1.Pod) {})
	svc := podForward(t, ns, "web", s.port)
	k := startKdap(t)
	args := map[string]any{"target": "pod/web", "namespace": ns, "localRoot": root, "runtime": s.runtime}

	refused := k.connect(t)
	refused.ExpectResponse(t, refused.Send("initialize", godap.InitializeRequestArguments{AdapterID: "kdap", LinesStartAt1: true, ColumnsStartAt1: true, PathFormat: "path"}))
	stop := map[string]any{"mode": "stop"}
	for k, v := range args {
		stop[k] = v
	}
	resp := refused.ExpectAnyResponse(t, refused.Send("attach", stop))
	if resp.Success || !strings.Contains(resp.ErrorText(), "annotation kdap.dev/mode=snapshot") {
		t.Fatalf("a stopping session in a snapshot-only namespace: %s", resp.Raw)
	}
	if n := ephemeralCount(t, ns, "web"); n != 0 {
		t.Errorf("the refused session injected %d containers", n)
	}

	c := attachSessionWith(t, k, args, s.file, s.line)
	said(t, c, "snapshot mode (namespace "+ns+"'s annotation kdap.dev/mode=snapshot)")
	const n = 10
	var latencies []time.Duration
	var held []time.Duration
	var last godap.OutputEventBody
	for i := 1; i <= n; i++ {
		took := expectReply(t, getAsync("http://"+svc+s.request(i)), s.reply(i), 20*time.Second)
		snap := c.Expect(t, fmt.Sprintf("snapshot %d", i), output("console", fmt.Sprintf("kdap snapshot %d (hit %d here)", i, i)))
		daptest.Decode(t, snap, &last)
		h := heldOf(t, last.Output)
		if took > h+time.Second {
			t.Errorf("request %d took %s, more than its snapshot held the target (%s) and a second", i, took, h)
		}
		latencies, held = append(latencies, took), append(held, h)
	}
	t.Logf("%d requests with a snapshot each: latency p50 %s max %s; target held p50 %s max %s",
		n, percentile(latencies, 50), percentile(latencies, 100), percentile(held, 50), percentile(held, 100))
	if vars := snapshotLocals(t, c, last.VariablesReference); vars[s.local] != s.localValue(n) {
		t.Errorf("snapshot %d: local %s = %q, want %q (all: %v)", n, s.local, vars[s.local], s.localValue(n), vars)
	}
	for _, m := range c.Recent() {
		if strings.Contains(m, `"event":"stopped"`) {
			t.Errorf("the IDE saw a stop in snapshot mode: %s", m)
		}
	}

	// A condition (even requests only) and a logpoint.
	setBreakpoints(t, c, s.file, map[string]any{"line": s.line, "condition": s.condition}, map[string]any{"line": s.logLine, "logMessage": s.logMessage})
	for i := 11; i <= 14; i++ {
		expectReply(t, getAsync("http://"+svc+s.request(i)), s.reply(i), 20*time.Second)
		logged, captured := false, false
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && !(logged && captured == (i%2 == 0)); {
			m, ok := c.Poll(func(m *dap.Message) bool { return m.Type == "event" && m.Event == "output" }, time.Until(deadline))
			if !ok {
				break
			}
			logged = logged || output("", s.logged(i))(m)
			captured = captured || output("console", "kdap snapshot")(m)
		}
		if !logged {
			t.Errorf("request %d: the logpoint printed no %q", i, s.logged(i))
		}
		if want := i%2 == 0; captured != want {
			t.Errorf("request %d: captured %v, want %v (the condition %s)", i, captured, want, s.condition)
		}
	}
	resp = c.ExpectAnyResponse(t, c.Send("pause", godap.PauseArguments{ThreadId: 1}))
	if resp.Success || !strings.Contains(resp.ErrorText(), "kdap.dev/mode=snapshot") {
		t.Errorf("pause in snapshot mode: %s", resp.Raw)
	}

	out := runKdap(t, "sessions", "-n", ns)
	who := whoAmI(t)
	if !strings.Contains(out, "web") || !strings.Contains(out, who) {
		t.Errorf("kdap sessions -n %s does not list the agent injected by %s:\n%s", ns, who, out)
	}
	c.ExpectResponse(t, c.Send("disconnect", godap.DisconnectArguments{}))
	waitEvents(t, ns, "web", "debug session ended", who, "mode snapshot")
}

// said checks that the session's console has said want (in the messages
// attach has already read).
func said(t *testing.T, c *daptest.Client, want string) {
	t.Helper()
	if !strings.Contains(c.Console(), want) {
		t.Errorf("the session did not say %q; its console:\n%s", want, c.Console())
	}
}

// setBreakpoints sets the file's breakpoints (a map each: a logpoint's
// logMessage must not be lost to omitempty) and checks each was answered.
func setBreakpoints(t *testing.T, c *daptest.Client, file string, bps ...map[string]any) {
	t.Helper()
	resp := c.ExpectResponse(t, c.Send("setBreakpoints", map[string]any{"source": map[string]any{"path": file}, "breakpoints": bps}))
	var body godap.SetBreakpointsResponseBody
	daptest.Decode(t, resp, &body)
	if len(body.Breakpoints) != len(bps) {
		t.Fatalf("setBreakpoints: %s", resp.Raw)
	}
}

// expectSaid waits until the session's console has said want.
func expectSaid(t *testing.T, c *daptest.Client, want string) {
	t.Helper()
	if strings.Contains(c.Console(), want) {
		return
	}
	if _, ok := c.Poll(output("", want), 10*time.Second); !ok {
		t.Errorf("the session did not say %q; its console:\n%s", want, c.Console())
	}
}

// heldOf reads "the target was held D" from a snapshot's line.
func heldOf(t testing.TB, line string) time.Duration {
	t.Helper()
	_, after, _ := strings.Cut(line, "the target was held ")
	d, err := time.ParseDuration(strings.TrimSpace(after))
	if err != nil {
		t.Fatalf("snapshot line %q: %v", line, err)
	}
	return d
}

// snapshotLocals expands a snapshot's top frame's locals.
func snapshotLocals(t *testing.T, c *daptest.Client, ref int) map[string]string {
	t.Helper()
	frames := expand(t, c, ref)
	if len(frames) == 0 || frames[0].VariablesReference == 0 {
		t.Fatalf("snapshot frames: %+v", frames)
	}
	out := map[string]string{}
	for _, scope := range expand(t, c, frames[0].VariablesReference) {
		for _, v := range expand(t, c, scope.VariablesReference) {
			out[v.Name] = v.Value
		}
	}
	return out
}

func expand(t *testing.T, c *daptest.Client, ref int) []godap.Variable {
	t.Helper()
	if ref == 0 {
		return nil
	}
	r := c.ExpectResponse(t, c.Send("variables", godap.VariablesArguments{VariablesReference: ref}))
	var body godap.VariablesResponseBody
	daptest.Decode(t, r, &body)
	return body.Variables
}

func whoAmI(t *testing.T) string {
	t.Helper()
	r, err := env.clientset.AuthenticationV1().SelfSubjectReviews().Create(context.Background(), &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return r.Status.UserInfo.Username
}

// waitEvents waits for kdap's session Events on the pod: one started, one
// whose message has every want.
func waitEvents(t *testing.T, ns, pod string, want ...string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var msgs []string
	for time.Now().Before(deadline) {
		evs, err := env.clientset.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + pod + ",reason=KdapDebugSession"})
		if err != nil {
			t.Fatal(err)
		}
		msgs = msgs[:0]
		started, found := false, false
		for _, ev := range evs.Items {
			msgs = append(msgs, ev.Message)
			started = started || strings.Contains(ev.Message, "debug session started")
			all := true
			for _, w := range want {
				all = all && strings.Contains(ev.Message, w)
			}
			found = found || all
		}
		if started && found {
			t.Logf("Events on pod %s: %q", pod, msgs)
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Errorf("no KdapDebugSession Events on pod %s with %q; saw %q", pod, want, msgs)
}

// TestStagingWithoutEventsOrNamespaceRBAC: a user who may debug pods but
// not create events nor read the namespace is told so once each, debugs
// as usual, and the session is in kdap's local log.
func TestStagingWithoutEventsOrNamespaceRBAC(t *testing.T) {
	root, s := goStaging(t)
	ns := newNamespace(t, nil)
	s.servicePod(t, ns, "web", func(*corev1.Pod) {})
	svc := podForward(t, ns, "web", s.port)
	userClient(t, ns, "dev", rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods", "pods/ephemeralcontainers", "pods/portforward"},
		Verbs: []string{"get", "list", "watch", "patch", "create"}})
	certPEM, keyPEM, err := env.cluster.IssueUser("dev")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kubeconfigFor(t, certPEM, keyPEM), file); err != nil {
		t.Fatal(err)
	}
	k := startKdap(t)
	c := attachSessionWith(t, k, map[string]any{"target": "pod/web", "namespace": ns, "localRoot": root, "kubeconfig": file, "runtime": "go"}, s.file, s.line)
	reply := getAsync("http://" + svc + s.request(1))
	thread, _ := expectStop(t, c, s.file, s.line)
	c.ExpectResponse(t, c.Send("continue", godap.ContinueArguments{ThreadId: thread}))
	expectReply(t, reply, s.reply(1), 10*time.Second)
	console := c.Console()
	for _, want := range []string{"this session leaves no Event on pod " + ns + "/web", "could not read namespace " + ns + " (RBAC: you may not get namespaces)"} {
		if n := strings.Count(console, want); n != 1 {
			t.Errorf("the console said %q %d times, want once:\n%s", want, n, console)
		}
	}
	c.ExpectResponse(t, c.Send("disconnect", godap.DisconnectArguments{}))
	deadline := time.Now().Add(10 * time.Second)
	for {
		log, _ := os.ReadFile(filepath.Join(env.state, "kdap", "kdap.log"))
		if strings.Contains(string(log), `"action":"debug session ended","namespace":"`+ns+`","pod":"web"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("kdap's local log has no end of this session:\n%s", log)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
