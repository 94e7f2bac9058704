package attach

// The fake-clientset tier: kdap's orchestration against client-go's fake
// clientset, for what a real cluster cannot be made to do on demand — a
// reused agent that exits between being found and being reached, every
// kind of patch refusal — and for target resolution without a cluster.

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kdap/kdap/agentapi"
	"github.com/kdap/kdap/agentdoor"
	"github.com/kdap/kdap/forward"
	"github.com/kdap/kdap/inject"
	"github.com/kdap/kdap/rbac"
)

// recorder is a Reporter that keeps what it was told.
type recorder struct {
	mu  sync.Mutex
	out []string
}

func (r *recorder) Progress(s string) { r.Output(s) }
func (r *recorder) Output(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.out = append(r.out, s)
}
func (r *recorder) said() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.out, "\n")
}

// appPod is a Running pod with one container "app" as uid 1000.
func appPod(name string, created time.Time, labels map[string]string) *corev1.Pod {
	uid := int64(1000)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop", Labels: labels, CreationTimestamp: metav1.NewTime(created), UID: types.UID("uid-" + name)},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "shop/web:1", Command: []string{"/web"},
			SecurityContext: &corev1.SecurityContext{RunAsUser: &uid, RunAsGroup: &uid}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning,
			ContainerStatuses: []corev1.ContainerStatus{{Name: "app", ContainerID: "containerd://abc", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}},
	}
}

// fakeCluster serves objs; its SelfSubjectAccessReviews allow everything
// (authorize changes that).
func fakeCluster(objs ...runtime.Object) (Cluster, *fake.Clientset) {
	client := fake.NewSimpleClientset(objs...)
	authorize(client, func(*authorizationv1.ResourceAttributes) bool { return true })
	return Cluster{Client: client, Namespace: "shop", Dialer: func(string, string) (*forward.Dialer, error) {
		return nil, errors.New("no port-forward in the fake tier")
	}}, client
}

// authorize answers the client's SelfSubjectAccessReviews with allow.
func authorize(client *fake.Clientset, allow func(*authorizationv1.ResourceAttributes) bool) {
	client.PrependReactor("create", "selfsubjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		review := a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SelfSubjectAccessReview).DeepCopy()
		review.Status.Allowed = allow(review.Spec.ResourceAttributes)
		return true, review, nil
	})
}

var testConfig = Config{Images: map[string]string{"go": "kdap/kdap-go:test"}, AgentTTL: time.Minute}

func TestPlanResolvesTheTarget(t *testing.T) {
	now := time.Now()
	sel := map[string]string{"app": "web"}
	old, newer := appPod("web-old", now.Add(-time.Hour), sel), appPod("web-new", now, sel)
	pending := appPod("web-pending", now.Add(time.Minute), sel)
	pending.Status.Phase = corev1.PodPending
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
		Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: sel}}}
	two := appPod("two", now, nil)
	two.Spec.Containers = append(two.Spec.Containers, corev1.Container{Name: "sidecar", Image: "envoy"})
	cl, _ := fakeCluster(old, newer, pending, dep, two, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}})

	var r recorder
	p, err := PlanFor(context.Background(), cl, testConfig, Args{Target: "deployment/web", Runtime: "go"}, &r)
	if err != nil {
		t.Fatal(err)
	}
	if p.Pod.Name != "web-new" || p.Container != "app" {
		t.Errorf("deployment/web → pod %s container %s, want the newest Running pod, web-new, app", p.Pod.Name, p.Container)
	}
	if !strings.Contains(r.said(), "using pod web-new (newest of 2 Running") {
		t.Errorf("kdap did not say which replica it chose:\n%s", r.said())
	}
	o := p.Options
	if o.Image != "kdap/kdap-go:test" || o.RunAsUser == nil || *o.RunAsUser != 1000 || o.Ptrace || o.ContainerID != "containerd://abc" {
		t.Errorf("plan options = %+v: want the configured image, as uid 1000, no SYS_PTRACE, the target's container ID", o)
	}

	for _, tc := range []struct {
		args Args
		want string
	}{
		{Args{Target: "pod/missing", Runtime: "go"}, "missing"},
		{Args{Target: "deployment/nope", Runtime: "go"}, "nope"},
		{Args{Target: "pod/two", Runtime: "go"}, `has 2 containers (app, sidecar): set "container"`},
		{Args{Target: "pod/two", Container: "db", Runtime: "go"}, "db"},
	} {
		if _, err := PlanFor(context.Background(), cl, testConfig, tc.args, &recorder{}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error with %q", tc.args, err, tc.want)
		}
	}
}

// TestPodSecurityRefusesBeforeAnythingIsAdded: a root target in a
// namespace enforcing baseline is refused by kdap's own check, and the
// pod is never patched.
func TestPodSecurityRefusesBeforeAnythingIsAdded(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	pod := appPod("web", time.Now(), nil)
	pod.Spec.Containers[0].SecurityContext = nil // root: the agent needs SYS_PTRACE
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{"pod-security.kubernetes.io/enforce": "baseline"}}}
	cl, client := fakeCluster(pod, ns)
	_, err := PrepareIn(context.Background(), cl, testConfig, Args{Target: "pod/web", Runtime: "go"}, &recorder{})
	if err == nil || !strings.Contains(err.Error(), `enforces PodSecurity "baseline"`) || !strings.Contains(err.Error(), "SYS_PTRACE") {
		t.Fatalf("err = %v", err)
	}
	for _, a := range client.Actions() {
		if a.GetVerb() == "patch" {
			t.Errorf("the pod was patched: %v", a)
		}
	}
}

// TestAUserWhoCouldNotUseTheAgentGetsNone: without watch on pods or
// get and create on pods/portforward kdap could add its debugger container but
// never reach it; it says what is missing and adds nothing.
func TestAUserWhoCouldNotUseTheAgentGetsNone(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	cl, client := fakeCluster(appPod("web", time.Now(), nil))
	authorize(client, func(a *authorizationv1.ResourceAttributes) bool {
		return a.Verb != "watch" && a.Subresource != "portforward" && a.Namespace == "shop"
	})
	_, err := PrepareIn(context.Background(), cl, testConfig, Args{Target: "pod/web", Runtime: "go"}, &recorder{})
	for _, want := range []string{`RBAC is missing "watch" on "pods" (to watch it start), "get" on "pods/portforward" (to reach it) and "create" on "pods/portforward" (to reach it)`, "nothing was added", "kdap rbac -n shop"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want %q", err, want)
		}
	}
	for _, a := range client.Actions() {
		if a.GetVerb() == "patch" {
			t.Errorf("the pod was patched: %v", a)
		}
	}
}

// TestAddExplainsEachRefusal maps each way the API server refuses the
// patch to the message kdap shows.
func TestAddExplainsEachRefusal(t *testing.T) {
	gr := schema.GroupResource{Resource: "pods"}
	for _, tc := range []struct {
		name    string
		err     error
		allowed bool // the SelfSubjectAccessReview's answer
		ec      corev1.EphemeralContainer
		want    []string
	}{
		{"RBAC", apierrors.NewForbidden(gr, "web", errors.New("no")), false, inject.Container("kdap-agent-x", inject.Options{Ptrace: true}),
			[]string{`RBAC is missing verb "patch" on resource "pods/ephemeralcontainers"`}},
		{"PodSecurity, SYS_PTRACE", apierrors.NewForbidden(gr, "web", errors.New("violates PodSecurity")), true, inject.Container("kdap-agent-x", inject.Options{Ptrace: true}),
			[]string{"admission control rejected", "SYS_PTRACE", "violates PodSecurity"}},
		{"PodSecurity, root", apierrors.NewForbidden(gr, "web", errors.New("violates PodSecurity")), true, inject.Container("kdap-agent-x", inject.Options{}),
			[]string{"admission control rejected", "runs as root"}},
		{"pod gone", apierrors.NewNotFound(gr, "web"), false, inject.Container("kdap-agent-x", inject.Options{}),
			[]string{"disappeared before the debugger could be added"}},
		{"no ephemeral containers", apierrors.NewNotFound(gr, ""), false, inject.Container("kdap-agent-x", inject.Options{}),
			[]string{"ephemeral containers are disabled"}},
		{"invalid", apierrors.NewInvalid(schema.GroupKind{Kind: "Pod"}, "web", nil), false, inject.Container("kdap-agent-x", inject.Options{}),
			[]string{"rejected the debugger container"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := appPod("web", time.Now(), nil)
			client := fake.NewSimpleClientset(pod)
			client.PrependReactor("patch", "pods", func(k8stesting.Action) (bool, runtime.Object, error) { return true, nil, tc.err })
			client.PrependReactor("create", "selfsubjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
				review := a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SelfSubjectAccessReview)
				review.Status.Allowed = tc.allowed
				return true, review, nil
			})
			err := inject.Add(context.Background(), client, pod, tc.ec)
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v, want %q", err, w)
				}
			}
		})
	}
}

// TestAReusedAgentThatJustExitedIsReplaced: the agent found Running exits
// (its idle TTL) before kdap reaches it; kdap says so and adds a new one
// with its key.
func TestAReusedAgentThatJustExitedIsReplaced(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	key, err := agentdoor.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	pod := appPod("web", time.Now(), nil)
	pod.Spec.EphemeralContainers = []corev1.EphemeralContainer{inject.Container("kdap-agent-old", inject.Options{Image: "kdap/kdap-go:test", Target: "app", Port: agentapi.DefaultPort, Key: key})}
	pod.Status.EphemeralContainerStatuses = []corev1.ContainerStatus{{Name: "kdap-agent-old", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}
	cl, client := fakeCluster(pod)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dials := 0
	cl.Dialer = func(string, string) (*forward.Dialer, error) {
		dials++
		if dials == 1 { // the found agent exits as kdap forwards to it
			p := trackedPod(client)
			p.Status.EphemeralContainerStatuses[0].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed"}}
			client.Tracker().Update(schema.GroupVersionResource{Version: "v1", Resource: "pods"}, p, "shop")
		}
		return forward.Streams(noForward{}), nil
	}
	var added []corev1.EphemeralContainer
	client.PrependReactor("patch", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		p := trackedPod(client)
		var patch struct {
			Spec struct {
				EphemeralContainers []corev1.EphemeralContainer `json:"ephemeralContainers"`
			} `json:"spec"`
		}
		if err := jsonUnmarshal(a.(k8stesting.PatchAction).GetPatch(), &patch); err != nil {
			return true, nil, err
		}
		added = append(added, patch.Spec.EphemeralContainers...)
		p.Spec.EphemeralContainers = append(p.Spec.EphemeralContainers, patch.Spec.EphemeralContainers...)
		cancel() // the new agent's start and forward are beyond the fake tier
		return true, p, client.Tracker().Update(schema.GroupVersionResource{Version: "v1", Resource: "pods"}, p, "shop")
	})
	var r recorder
	_, err = PrepareIn(ctx, cl, testConfig, Args{Target: "pod/web", Runtime: "go"}, &r)
	if err == nil {
		t.Fatal("PrepareIn succeeded without a port-forward")
	}
	said := r.said()
	for _, want := range []string{"reusing debugger container kdap-agent-old", "debugger container kdap-agent-old has just exited; starting a new one"} {
		if !strings.Contains(said, want) {
			t.Errorf("kdap did not say %q:\n%s", want, said)
		}
	}
	if len(added) != 1 || added[0].Name == "kdap-agent-old" || added[0].Image != "kdap/kdap-go:test" {
		t.Fatalf("added %+v, want one new agent", added)
	}
	env := map[string]string{}
	for _, e := range added[0].Env {
		env[e.Name] = e.Value
	}
	if env[agentapi.EnvKey] != key || env[agentapi.EnvListen] != "127.0.0.1:47475" {
		t.Errorf("the new agent's env %v: want this machine's key, and the next port (the old agent's stays taken)", env)
	}
}

// noForward is a portforward dialer that cannot connect.
type noForward struct{}

func (noForward) Dial(...string) (httpstream.Connection, string, error) {
	return nil, "", errors.New("no port-forward in the fake tier")
}

// trackedPod is the fake cluster's pod shop/web.
func trackedPod(client *fake.Clientset) *corev1.Pod {
	o, _ := client.Tracker().Get(schema.GroupVersionResource{Version: "v1", Resource: "pods"}, "shop", "web")
	return o.(*corev1.Pod)
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// TestWhatAttachChecksIsInTheRole: what an attach checks before its patch
// is among the permissions kdap rbac grants and kdap doctor calls required.
func TestWhatAttachChecksIsInTheRole(t *testing.T) {
	for _, want := range attachNeeds {
		resource := strings.TrimSuffix(want.resource+"/"+want.subresource, "/")
		found := false
		for _, p := range rbac.Permissions {
			found = found || p.Required() && p.Group == "" && p.Resource == resource && slices.Contains(p.Verbs, want.verb)
		}
		if !found {
			t.Errorf("%s %s is checked before the patch but is not a required permission of package rbac", want.verb, resource)
		}
	}
}
