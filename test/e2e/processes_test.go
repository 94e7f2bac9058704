//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	godap "github.com/google/go-dap"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kdap/kdap/dap"
	"github.com/kdap/kdap/dap/daptest"
	"github.com/kdap/kdap/test/fixtures"
)

// childInit is what VS Code says it supports: child sessions included.
var childInit = godap.InitializeRequestArguments{ClientID: "e2e", AdapterID: "kdap", LinesStartAt1: true, ColumnsStartAt1: true,
	PathFormat: "path", SupportsProgressReporting: true, SupportsStartDebuggingRequest: true}

// parent is a parent session as the test's IDE holds it.
type parent struct {
	*daptest.Client
	pending []*dap.Message // startDebugging requests read while waiting for something else
}

// parentSession attaches a client that takes child sessions and
// configures it; kdap answers as a parent session. console is what kdap
// said until then.
func parentSession(t *testing.T, k *kdapProcess, args map[string]any) (p *parent, console string) {
	t.Helper()
	p = &parent{Client: k.connect(t)}
	p.ExpectResponse(t, p.Send("initialize", childInit))
	attach := p.Send("attach", args)
	var out strings.Builder
	resp := p.Expect(t, "attach response", func(m *dap.Message) bool {
		if m.Type == "event" && m.Event == "output" {
			var body godap.OutputEventBody
			json.Unmarshal(m.Body(), &body)
			out.WriteString(body.Output)
		}
		return m.Type == "response" && m.RequestSeq == attach
	})
	if !resp.Success {
		t.Fatalf("attach failed: %s", resp.ErrorText())
	}
	p.ExpectEvent(t, "initialized")
	done := p.Send("configurationDone", nil)
	p.Expect(t, "configurationDone response", func(m *dap.Message) bool {
		if m.Type == "request" && m.Command == "startDebugging" {
			p.pending = append(p.pending, m)
		}
		return m.Type == "response" && m.RequestSeq == done
	})
	t.Logf("parent console:\n%s", out.String())
	return p, out.String()
}

// nextStart is the parent's next startDebugging request.
func (p *parent) nextStart(t *testing.T) *dap.Message {
	t.Helper()
	if len(p.pending) > 0 {
		m := p.pending[0]
		p.pending = p.pending[1:]
		return m
	}
	return p.ExpectRequest(t, "startDebugging")
}

// child is one child session the test started, as an IDE would.
type child struct {
	c      *daptest.Client
	config map[string]any
}

func (ch child) String() string { return fmt.Sprint(ch.config["name"]) }

// acceptChild waits for the parent's next startDebugging request, answers
// it and starts that session (a new connection to kdap with the
// configuration it was given), with a breakpoint at file:line.
func acceptChild(t *testing.T, k *kdapProcess, p *parent, file string, line int) child {
	t.Helper()
	req := p.nextStart(t)
	var args godap.StartDebuggingRequestArguments
	if err := json.Unmarshal(req.Arguments(), &args); err != nil {
		t.Fatal(err)
	}
	if args.Request != "attach" {
		t.Errorf("startDebugging asks for %q, want attach", args.Request)
	}
	resp, _ := json.Marshal(map[string]any{"seq": p.NextSeq(), "type": "response", "request_seq": req.Seq, "command": "startDebugging", "success": true})
	p.SendRaw(resp)
	t.Logf("child session %v: %v", args.Configuration["name"], args.Configuration)
	return child{c: attachSessionInit(t, k, childInit, args.Configuration, file, line), config: args.Configuration}
}

func isBreakpointStop(m *dap.Message) bool {
	var ev struct {
		Body godap.StoppedEventBody `json:"body"`
	}
	return m.Type == "event" && m.Event == "stopped" && json.Unmarshal(m.Raw, &ev) == nil && ev.Body.Reason == "breakpoint"
}

// stopInAny waits until one of children stops at the breakpoint, and
// returns it with the stopped thread and its top frame, checked to be at
// file:line.
func stopInAny(t *testing.T, children []child, file string, line int) (child, int, int) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); {
		for _, ch := range children {
			m, ok := ch.c.Poll(isBreakpointStop, 100*time.Millisecond)
			if !ok {
				continue
			}
			var sb godap.StoppedEventBody
			daptest.Decode(t, m, &sb)
			st := ch.c.ExpectResponse(t, ch.c.Send("stackTrace", godap.StackTraceArguments{ThreadId: sb.ThreadId, Levels: 20}))
			var stack godap.StackTraceResponseBody
			daptest.Decode(t, st, &stack)
			if len(stack.StackFrames) == 0 {
				t.Fatalf("%v: empty stack: %s", ch, st.Raw)
			}
			top := stack.StackFrames[0]
			if top.Source == nil || top.Source.Path != file || top.Line != line {
				t.Errorf("%v: top frame %s at %v:%d; want %s:%d", ch, top.Name, top.Source, top.Line, file, line)
			}
			t.Logf("%v stopped in %s at line %d", ch, top.Name, top.Line)
			return ch, sb.ThreadId, top.Id
		}
	}
	t.Fatalf("none of %v stopped at %s:%d within 60s", children, file, line)
	return child{}, 0, 0
}

// getFresh fetches a URL in the background on a connection of its own: a
// kept-alive one would go to the worker that served it before.
func getFresh(u string) <-chan string {
	return fetchAsync(&http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}, u)
}

// waitLogCount waits until text appears n times in the pod's app log.
func waitLogCount(t *testing.T, ns, pod, text string, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for strings.Count(podLogs(t, ns, pod, "app"), text) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%q is not %d times in the log of %s/%s:\n%s", text, n, ns, pod, podLogs(t, ns, pod, "app"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// expectOutput waits for a console line of c containing all of want.
func expectOutput(t *testing.T, c *daptest.Client, want ...string) string {
	t.Helper()
	m := c.Expect(t, fmt.Sprintf("output with %q", want), func(m *dap.Message) bool {
		if m.Type != "event" || m.Event != "output" {
			return false
		}
		for _, w := range want {
			if !strings.Contains(string(m.Raw), w) {
				return false
			}
		}
		return true
	})
	var body godap.OutputEventBody
	daptest.Decode(t, m, &body)
	return body.Output
}

// stopTwoWorkers sends one request, which stops in one worker, then
// another, which the busy worker cannot take, so it stops in the other:
// both are debugged at once. It checks the locals, continues both and
// returns the replies.
func stopTwoWorkers(t *testing.T, children []child, url func(items int) string, file string, line int) (first, second child, replies []string) {
	t.Helper()
	r1 := getFresh(url(2))
	first, th1, f1 := stopInAny(t, children, file, line)
	r2 := getFresh(url(3))
	var others []child
	for _, ch := range children {
		if ch.c != first.c {
			others = append(others, ch)
		}
	}
	second, th2, f2 := stopInAny(t, others, file, line)
	if v := locals(t, first.c, f1)["items"]; v != "2" {
		t.Errorf("%v: local items = %q, want 2", first, v)
	}
	if v := locals(t, second.c, f2)["items"]; v != "3" {
		t.Errorf("%v: local items = %q, want 3", second, v)
	}
	first.c.ExpectResponse(t, first.c.Send("continue", godap.ContinueArguments{ThreadId: th1}))
	second.c.ExpectResponse(t, second.c.Send("continue", godap.ContinueArguments{ThreadId: th2}))
	for _, r := range []<-chan string{r1, r2} {
		select {
		case got := <-r:
			replies = append(replies, got)
		case <-time.After(20 * time.Second):
			t.Fatal("no reply within 20s of continuing both workers")
		}
	}
	return first, second, replies
}

// endAll disconnects the children and the parent.
func endAll(t *testing.T, parent *parent, children []child) {
	t.Helper()
	for _, ch := range children {
		ch.c.Send("disconnect", godap.DisconnectArguments{})
	}
	parent.ExpectResponse(t, parent.Send("disconnect", godap.DisconnectArguments{}))
}

// TestGunicornWorkersAsChildSessions: a Python service under gunicorn with
// 2 workers (the master is PID 1 and serves nothing). One attach becomes a
// child session per worker; two requests stop in both workers at once;
// the master gets nothing injected; a worker gunicorn replaces (after
// --max-requests) ends its session with the truth and the new one joins
// by itself; after disconnect every worker serves without stopping.
func TestGunicornWorkersAsChildSessions(t *testing.T) {
	ns := newNamespace(t, nil)
	createPodWith(t, ns, "shop", fixtures.PyHTTPImage, func(p *corev1.Pod) { p.Spec.Containers[0].Command = fixtures.PyGunicornCommand })
	logsOnFailure(t, ns, "shop")
	waitLogCount(t, ns, "shop", "Booting worker with pid", 2)
	svc := serviceForward(t, ns, "shop")
	root, pricing := pyLocalCopy(t)
	line := lineOf(t, pricing, "total = items * unit")
	k := startKdap(t)

	parent, listing := parentSession(t, k, map[string]any{"target": "pod/shop", "namespace": ns, "localRoot": root})
	for _, want := range []string{"the target container runs 3 processes", "pid 1 ", "main", "▶ pid", "worker"} {
		if !strings.Contains(listing, want) {
			t.Errorf("process listing lacks %q:\n%s", want, listing)
		}
	}
	children := []child{acceptChild(t, k, parent, pricing, line), acceptChild(t, k, parent, pricing, line)}
	workers := map[string]bool{}
	for _, ch := range children {
		workers[fmt.Sprint(ch.config["process"])] = true
	}
	if len(workers) != 2 || workers["1"] {
		t.Fatalf("child sessions for processes %v, want the two workers (not the master, pid 1)", workers)
	}

	first, second, replies := stopTwoWorkers(t, children, func(n int) string { return fmt.Sprintf("http://%s/quote?items=%d", svc, n) }, pricing, line)
	for i, ch := range []child{first, second} {
		want := fmt.Sprintf("total: %d (pid %v)", 7*(i+2), ch.config["process"])
		if replies[i] != want {
			t.Errorf("reply %d = %q, want %q (served by the worker that stopped)", i+1, replies[i], want)
		}
	}
	log := agentLog(t, ns, "shop")
	for pid := range workers {
		if !strings.Contains(log, "debugpy injected into pid "+pid+" ") {
			t.Errorf("debugpy was not injected into worker %s; agent log:\n%s", pid, log)
		}
	}
	if strings.Contains(log, "debugpy injected into pid 1 ") {
		t.Errorf("debugpy was injected into gunicorn's master; agent log:\n%s", log)
	}

	// Requests without breakpoints until gunicorn replaces a worker (after
	// 4 requests): its session ends saying so, and the new worker's session
	// starts without the test asking for it.
	for _, ch := range children {
		ch.c.ExpectResponse(t, ch.c.Send("setBreakpoints", map[string]any{"source": map[string]any{"path": pricing}, "breakpoints": []any{}}))
	}
	for i := 0; i < 6; i++ {
		expectReply(t, getFresh(fmt.Sprintf("http://%s/quote?items=1", svc)), "total: 7", 20*time.Second)
	}
	// What the parent says and starts meanwhile: a worker's exit, and a
	// child session for each new worker (gunicorn may replace either or
	// both, and again while the test sends requests).
	var said strings.Builder
	var late []child
	listen := func(within time.Duration) {
		for deadline := time.Now().Add(within); time.Now().Before(deadline); {
			m, ok := parent.Poll(func(m *dap.Message) bool {
				return m.Type == "request" && m.Command == "startDebugging" || m.Type == "event" && m.Event == "output"
			}, 200*time.Millisecond)
			switch {
			case !ok:
			case m.Type == "request":
				parent.pending = append(parent.pending, m)
				late = append(late, acceptChild(t, k, parent, pricing, line))
			default:
				var body godap.OutputEventBody
				json.Unmarshal(m.Body(), &body)
				said.WriteString(body.Output)
			}
		}
	}
	listen(5 * time.Second)
	t.Logf("parent said:\n%s", said.String())
	if len(late) == 0 || !strings.Contains(said.String(), "started in pod shop: attaching it") {
		t.Fatal("no child session started for a worker gunicorn started later")
	}
	for _, ch := range late {
		if workers[fmt.Sprint(ch.config["process"])] {
			t.Errorf("the late child session is for process %v, which already had one", ch.config["process"])
		}
	}
	exited := regexp.MustCompile(`process (\d+) in pod shop has exited: its child session ends`).FindStringSubmatch(said.String())
	if exited == nil || !workers[exited[1]] {
		t.Errorf("the parent did not say that a replaced worker exited:\n%s", said.String())
	} else {
		for _, ch := range children {
			if fmt.Sprint(ch.config["process"]) == exited[1] {
				ch.c.Expect(t, "the exited worker's session to end", func(m *dap.Message) bool { return m.Type == "event" && m.Event == "terminated" })
			}
		}
	}
	// A request now stops in whichever late worker serves it.
	var stopped bool
	for i := 0; i < 12 && !stopped; i++ {
		reply := getFresh(fmt.Sprintf("http://%s/quote?items=4", svc))
		for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline) && !stopped; {
			for _, ch := range late {
				if m, ok := ch.c.Poll(isBreakpointStop, 100*time.Millisecond); ok {
					var sb godap.StoppedEventBody
					daptest.Decode(t, m, &sb)
					t.Logf("%v stopped", ch)
					ch.c.ExpectResponse(t, ch.c.Send("continue", godap.ContinueArguments{ThreadId: sb.ThreadId}))
					stopped = true
					break
				}
			}
		}
		expectReply(t, reply, "total: 28", 20*time.Second)
		listen(500 * time.Millisecond)
	}
	if !stopped {
		t.Error("no request stopped in a worker that joined late")
	}

	endAll(t, parent, append(children, late...))
	for i := 0; i < 4; i++ {
		expectReply(t, getFresh(fmt.Sprintf("http://%s/quote?items=%d", svc, i)), fmt.Sprintf("total: %d", 7*i), 10*time.Second)
	}
}

// TestNodeClusterWorkersAsChildSessions: a Node.js cluster (a primary and
// 2 workers, all on the default inspector port): each worker gets a child
// session and its own inspector, two requests stop in both at once, and
// after disconnect both inspectors are closed and the service runs on.
func TestNodeClusterWorkersAsChildSessions(t *testing.T) {
	ns := newNamespace(t, nil)
	createPodWith(t, ns, "web", fixtures.NodeHTTPImage, func(p *corev1.Pod) { p.Spec.Containers[0].Command = fixtures.NodeClusterCommand })
	logsOnFailure(t, ns, "web")
	waitLogCount(t, ns, "web", "nodehttp listening on", 2)
	svc := podForward(t, ns, "web", fixtures.NodeHTTPPort)
	root, file, line := nodeJS.localCopy(t)
	k := startKdap(t)

	parent, console := parentSession(t, k, map[string]any{"target": "pod/web", "namespace": ns, "localRoot": root})
	if !strings.Contains(console, "the target container runs 3 processes") {
		t.Errorf("the console does not list the cluster's processes:\n%s", console)
	}
	children := []child{acceptChild(t, k, parent, file, line), acceptChild(t, k, parent, file, line)}
	if children[0].config["process"] == children[1].config["process"] {
		t.Fatalf("both child sessions are for process %v", children[0].config["process"])
	}
	first, second, replies := stopTwoWorkers(t, children, func(n int) string { return fmt.Sprintf("http://%s/quote?items=%d", svc, n) }, file, line)
	if first.c == second.c || replies[0] != "total: 14" || replies[1] != "total: 21" {
		t.Errorf("replies %q from %v and %v, want totals 14 and 21 from both workers", replies, first, second)
	}
	log := agentLog(t, ns, "web")
	if n := strings.Count(log, "moved the target's inspector from port 9229"); n != 2 {
		t.Errorf("%d inspectors moved off the default port, want one per worker; agent log:\n%s", n, log)
	}
	endAll(t, parent, children)
	deadline := time.Now().Add(15 * time.Second)
	for strings.Count(agentLog(t, ns, "web"), "closed the target's inspector") < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("both workers' inspectors were not closed after disconnect; agent log:\n%s", agentLog(t, ns, "web"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	for i := 0; i < 4; i++ {
		expectReply(t, getFresh(fmt.Sprintf("http://%s/quote?items=%d", svc, i)), fmt.Sprintf("total: %d", 7*i), 10*time.Second)
	}
}

// TestSidecarStartedFirstIsNotTheTarget: in a pod that shares its PID
// namespace, a Go sidecar started before the app has the lower pid; kdap
// debugs the app (the container it was asked for), and the sidecar serves
// on without stopping.
func TestSidecarStartedFirstIsNotTheTarget(t *testing.T) {
	ns := newNamespace(t, nil)
	yes := true
	createPodWith(t, ns, "mesh", fixtures.GoHTTPImage, func(p *corev1.Pod) {
		p.Spec.ShareProcessNamespace = &yes
		app := p.Spec.Containers[0]
		sidecar := corev1.Container{Name: "proxy", Image: fixtures.GoHTTPImage, Args: []string{"-listen", ":8081"}, ImagePullPolicy: corev1.PullNever}
		p.Spec.Containers = []corev1.Container{sidecar, app}
	})
	logsOnFailure(t, ns, "mesh")
	svc := serviceForward(t, ns, "mesh")
	proxy := podForward(t, ns, "mesh", 8081)
	root, mainGo := localCopy(t)
	line := lineOf(t, mainGo, "message := fmt.Sprintf")
	k := startKdap(t)

	c := attachSessionWith(t, k, map[string]any{"target": "pod/mesh", "namespace": ns, "container": "app", "localRoot": root}, mainGo, line)
	expectReply(t, getFresh(fmt.Sprintf("http://%s/hello?name=proxy", proxy)), "proxy", 10*time.Second)
	reply := getFresh(fmt.Sprintf("http://%s/hello?name=app", svc))
	thread, frame := expectStop(t, c, mainGo, line)
	if v := locals(t, c, frame)["name"]; v != `"app"` {
		t.Errorf("local name = %q, want \"app\"", v)
	}
	c.ExpectResponse(t, c.Send("continue", godap.ContinueArguments{ThreadId: thread}))
	expectReply(t, reply, "app", 10*time.Second)
	log := agentLog(t, ns, "mesh")
	m := regexp.MustCompile(`target pid (\d+) `).FindStringSubmatch(log)
	if m == nil || m[1] == "2" {
		t.Errorf("the agent's target is not the app; agent log:\n%s", log)
	}
	c.ExpectResponse(t, c.Send("disconnect", godap.DisconnectArguments{}))
}

// webReplica labels a pod as a replica of deployment "web".
func webReplica(p *corev1.Pod) { p.Labels = map[string]string{"tier": "web"} }

// createReplicas creates the Go service's pods as replicas of deployment
// "web" (no controller runs in the test cluster: the test makes the pods),
// and the deployment.
func createReplicas(t *testing.T, ns string, pods ...string) {
	t.Helper()
	for _, name := range pods {
		createPodWith(t, ns, name, fixtures.GoHTTPImage, webReplica)
	}
	createWebDeployment(t, ns, len(pods))
}

// createWebDeployment creates deployment "web" of the Go service, whose
// pods are those labelled tier=web.
func createWebDeployment(t *testing.T, ns string, n int) {
	t.Helper()
	replicas := int32(n)
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"tier": "web"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: fixtures.GoHTTPImage}}},
			},
		},
	}
	if _, err := env.clientset.AppsV1().Deployments(ns).Create(context.Background(), dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestDeploymentReplicasAsChildSessions: "replicas": "all" attaches every
// Running pod of a deployment as a child session; a request to either pod
// stops in its own session; with newReplicas a pod that starts later is
// attached, and a pod deleted ends its session and the parent says so.
func TestDeploymentReplicasAsChildSessions(t *testing.T) {
	ns := newNamespace(t, nil)
	ctx := context.Background()
	createReplicas(t, ns, "web-a", "web-b")
	root, mainGo := localCopy(t)
	line := lineOf(t, mainGo, "message := fmt.Sprintf")
	k := startKdap(t)

	parent, console := parentSession(t, k, map[string]any{"target": "deployment/web", "namespace": ns, "localRoot": root, "replicas": "all", "newReplicas": true})
	if !strings.Contains(console, "deployment/web has 2 Running pods (web-a, web-b)") {
		t.Errorf("the console does not name the replicas:\n%s", console)
	}
	children := map[string]child{}
	for i := 0; i < 2; i++ {
		ch := acceptChild(t, k, parent, mainGo, line)
		children[fmt.Sprint(ch.config["target"])] = ch
	}
	for _, pod := range []string{"web-a", "web-b"} {
		ch, ok := children["pod/"+pod]
		if !ok {
			t.Fatalf("no child session for %s: %v", pod, children)
		}
		reply := getFresh(fmt.Sprintf("http://%s/hello?name=%s", serviceForward(t, ns, pod), pod))
		got, thread, frame := stopInAny(t, []child{children["pod/web-a"], children["pod/web-b"]}, mainGo, line)
		if got.c != ch.c {
			t.Errorf("a request to %s stopped in %v", pod, got)
		}
		if v := locals(t, got.c, frame)["name"]; v != `"`+pod+`"` {
			t.Errorf("%v: local name = %q, want %q", got, v, pod)
		}
		got.c.ExpectResponse(t, got.c.Send("continue", godap.ContinueArguments{ThreadId: thread}))
		expectReply(t, reply, pod, 10*time.Second)
	}

	// A replica that starts during the session joins it.
	createPodWith(t, ns, "web-c", fixtures.GoHTTPImage, webReplica)
	expectOutput(t, parent.Client, "pod web-c of deployment/web is Running: attaching it")
	late := acceptChild(t, k, parent, mainGo, line)
	reply := getFresh(fmt.Sprintf("http://%s/hello?name=late", serviceForward(t, ns, "web-c")))
	_, thread, _ := stopInAny(t, []child{late}, mainGo, line)
	late.c.ExpectResponse(t, late.c.Send("continue", godap.ContinueArguments{ThreadId: thread}))
	expectReply(t, reply, "late", 10*time.Second)

	// A replica that goes away ends its session, truthfully.
	grace := int64(0)
	if err := env.clientset.CoreV1().Pods(ns).Delete(ctx, "web-b", metav1.DeleteOptions{GracePeriodSeconds: &grace}); err != nil {
		t.Fatal(err)
	}
	gone := children["pod/web-b"].c
	if note := expectOutput(t, gone, "lost the connection to the debugger"); !strings.Contains(note, "pod "+ns+"/web-b has been deleted") {
		t.Errorf("web-b's session ended with %q, want it to say the pod was deleted", note)
	}
	gone.Expect(t, "terminated event of web-b's session", func(m *dap.Message) bool { return m.Type == "event" && m.Event == "terminated" })
	expectOutput(t, parent.Client, "pod web-b of deployment/web is gone: its child session ends")
	endAll(t, parent, []child{children["pod/web-a"], late})
}
