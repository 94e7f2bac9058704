package doctor

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kdap/kdap/attach"
	"github.com/kdap/kdap/forward"
	"github.com/kdap/kdap/runtimes"
)

// The fake-clientset tier of kdap doctor: the API server's answers are
// made up, so each check's every outcome can be asked for. The e2e tests
// run it against a real cluster.

func pod(uid *int64, command []string, env ...corev1.EnvVar) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
		Spec: corev1.PodSpec{NodeName: "node-1", Containers: []corev1.Container{{Name: "app", Image: "shop/web:1", Command: command, Env: env,
			SecurityContext: &corev1.SecurityContext{RunAsUser: uid}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning},
	}
}

func namespace(level string) *corev1.Namespace {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}
	if level != "" {
		ns.Labels = map[string]string{"pod-security.kubernetes.io/enforce": level}
	}
	return ns
}

// run runs kdap doctor on pod/web of a fake cluster whose reviews allow
// what allow says.
func run(t *testing.T, allow func(*authorizationv1.ResourceAttributes) bool, rt string, objs ...runtime.Object) Report {
	t.Helper()
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	client := fake.NewSimpleClientset(objs...)
	client.PrependReactor("create", "selfsubjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		review := a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SelfSubjectAccessReview).DeepCopy()
		review.Status.Allowed = allow(review.Spec.ResourceAttributes)
		return true, review, nil
	})
	cl := attach.Cluster{Client: client, Namespace: "shop", Dialer: func(string, string) (*forward.Dialer, error) {
		return nil, errors.New("kdap doctor forwards nothing")
	}}
	images := map[string]string{}
	for _, rt := range runtimes.All {
		images[rt.Name] = "127.0.0.1:1/kdap-" + rt.Name + ":test" // no registry listens there
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep := Run(ctx, cl, attach.Config{Images: images}, attach.Args{Target: "pod/web", Runtime: rt}, nil)
	for _, a := range client.Actions() {
		if a.GetVerb() != "get" && a.GetVerb() != "list" && a.GetResource().Resource != "selfsubjectaccessreviews" && a.GetResource().Resource != "selfsubjectreviews" {
			t.Errorf("kdap doctor changed the cluster: %v", a)
		}
	}
	return rep
}

func check(t *testing.T, rep Report, name string) Check {
	t.Helper()
	for _, c := range rep.Checks {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no check %q in %+v", name, rep.Checks)
	return Check{}
}

func all(*authorizationv1.ResourceAttributes) bool { return true }

func TestAHealthyTargetBlocksNothing(t *testing.T) {
	uid := int64(1000)
	rep := run(t, all, "auto", pod(&uid, []string{"/web"}), namespace("restricted"))
	if n := rep.Blocking(); n != 0 {
		t.Errorf("%d checks block: %+v", n, rep.Checks)
	}
	if c := check(t, rep, "PodSecurity"); c.Result != OK || !strings.Contains(c.Detail, "enforces restricted; the debugger container passes restricted") {
		t.Errorf("PodSecurity: %+v", c)
	}
	if c := check(t, rep, "privileges"); !strings.Contains(c.Detail, "uid 1000, the target's, with every capability dropped") {
		t.Errorf("privileges: %+v", c)
	}
	if c := check(t, rep, "runtime"); !strings.Contains(c.Detail, runtimes.Go.Title+", debugged with "+runtimes.Go.Debugger) || !strings.Contains(c.Detail, "guessed") {
		t.Errorf("runtime: %+v", c)
	}
	if c := check(t, rep, "debugger image"); c.Result != Unknown || !strings.Contains(c.Fix, "ErrImagePull") {
		t.Errorf("an image whose registry kdap cannot reach: %+v", c)
	}
	// As the target's user, the node's ptrace_scope matters, and cannot be seen.
	if c := check(t, rep, "node's ptrace_scope"); c.Result != Unknown || !strings.Contains(c.Fix, "Operation not permitted") {
		t.Errorf("ptrace_scope: %+v", c)
	}
}

func TestEachMissingPermissionSaysWhatItCosts(t *testing.T) {
	uid := int64(1000)
	rep := run(t, func(a *authorizationv1.ResourceAttributes) bool {
		return a.Subresource != "ephemeralcontainers" && a.Resource != "events" && a.Resource != "nodes"
	}, "auto", pod(&uid, []string{"/web"}), namespace(""))
	if c := check(t, rep, "patch pods/ephemeralcontainers"); c.Result != Blocks || !strings.Contains(c.Fix, "kdap rbac -n shop --feature debug") {
		t.Errorf("no patch: %+v", c)
	}
	if c := check(t, rep, "create events"); c.Result != Warn || !strings.Contains(c.Detail, "may not create events in namespace shop: sessions are recorded only in the local log") {
		t.Errorf("no events: %+v", c)
	}
	if c := check(t, rep, "get nodes"); c.Result != Warn || !strings.Contains(c.Detail, "cluster-wide (a ClusterRole grants it)") {
		t.Errorf("no nodes: %+v", c)
	}
	if rep.Blocking() != 1 {
		t.Errorf("%d checks block, want 1: %+v", rep.Blocking(), rep.Checks)
	}
}

func TestARootTargetInARestrictedNamespaceIsBlocked(t *testing.T) {
	rep := run(t, all, "auto", pod(nil, []string{"/web"}), namespace("restricted"))
	c := check(t, rep, "PodSecurity")
	if c.Result != Blocks || !strings.Contains(c.Detail, "SYS_PTRACE") || !strings.Contains(c.Detail, "runAsUser") {
		t.Errorf("PodSecurity: %+v", c)
	}
	for _, ch := range rep.Checks {
		if ch.Name == "node's ptrace_scope" {
			t.Errorf("with SYS_PTRACE the node's ptrace_scope does not matter, but it is checked: %+v", ch)
		}
	}
}

func TestWhatThePodSpecSaysOfTheUnknowns(t *testing.T) {
	uid := int64(1000)
	rep := run(t, all, runtimes.Node.Name, pod(&uid, []string{"node", "--disable-sigusr1", "server.js"}), namespace(""))
	if c := check(t, rep, "inspector on SIGUSR1"); c.Result != Blocks || !strings.Contains(c.Detail, "--disable-sigusr1") {
		t.Errorf("Node without SIGUSR1: %+v", c)
	}
	rep = run(t, all, runtimes.Java.Name, pod(&uid, []string{"java", "-jar", "app.jar"},
		corev1.EnvVar{Name: "JAVA_TOOL_OPTIONS", Value: "-agentlib:jdwp=transport=dt_socket,server=y,suspend=n,address=127.0.0.1:0"}), namespace(""))
	if c := check(t, rep, "JDWP at start"); c.Result != OK {
		t.Errorf("Java with JDWP in JAVA_TOOL_OPTIONS: %+v", c)
	}
	if c := check(t, rep, "attach mechanism"); c.Result != Unknown {
		t.Errorf("Java's attach mechanism: %+v", c)
	}
}

func TestATargetThatIsNotThereBlocks(t *testing.T) {
	rep := run(t, all, "auto", namespace(""))
	if c := check(t, rep, "target"); c.Result != Blocks || !strings.Contains(c.Detail, `"web" not found`) {
		t.Errorf("target: %+v", c)
	}
}
