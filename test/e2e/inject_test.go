//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kdap/kdap/agentapi"
	"github.com/kdap/kdap/forward"
	"github.com/kdap/kdap/inject"
	"github.com/kdap/kdap/test/fixtures"
)

// probeAgent is an agent spec that runs the probe fixture as the "agent".
func probeAgent(target string, ptrace bool) inject.Options {
	return inject.Options{Image: fixtures.ProbeImage, Target: target, Runtime: "go", Port: agentapi.DefaultPort, TTL: time.Minute, Ptrace: ptrace}
}

func getPod(t testing.TB, ns, name string) *corev1.Pod {
	t.Helper()
	pod, err := env.clientset.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return pod
}

func TestInjectRunsAndIsFoundForReuse(t *testing.T) {
	ns := newNamespace(t, nil)
	createPod(t, ns, "web", fixtures.GoHTTPImage)
	ctx := context.Background()
	pod := getPod(t, ns, "web")
	opts := probeAgent("app", true)
	name := inject.NewName(pod, func() string { return "one" })
	start := time.Now()
	if err := inject.Add(ctx, env.clientset, pod, inject.Container(name, opts)); err != nil {
		t.Fatal(err)
	}
	if err := inject.WaitRunning(ctx, env.clientset, ns, "web", name, time.Minute); err != nil {
		t.Fatal(err)
	}
	t.Logf("patch → Running: %s", time.Since(start).Round(time.Millisecond))
	agent, ok := inject.FindRunning(getPod(t, ns, "web"), "app", fixtures.ProbeImage, "")
	if !ok || agent.Name != name || agent.Port != agentapi.DefaultPort {
		t.Fatalf("FindRunning = %+v, %v; want %s on %d", agent, ok, name, agentapi.DefaultPort)
	}
	if port := inject.FreePort(getPod(t, ns, "web")); port != agentapi.DefaultPort+1 {
		t.Errorf("FreePort with one agent = %d", port)
	}
}

func TestInjectErrorsNameTheFix(t *testing.T) {
	ctx := context.Background()

	t.Run("image not on the node", func(t *testing.T) {
		ns := newNamespace(t, nil)
		createPod(t, ns, "web", fixtures.GoHTTPImage)
		opts := probeAgent("app", false)
		opts.Image = "kdap.test/no-such-image:1"
		start := time.Now()
		if err := inject.Add(ctx, env.clientset, getPod(t, ns, "web"), inject.Container("kdap-agent-x", opts)); err != nil {
			t.Fatal(err)
		}
		err := inject.WaitRunning(ctx, env.clientset, ns, "web", "kdap-agent-x", time.Minute)
		t.Logf("after %s: %v", time.Since(start).Round(time.Millisecond), err)
		if err == nil || !strings.Contains(err.Error(), `debugger image "kdap.test/no-such-image:1" cannot be used`) ||
			!strings.Contains(err.Error(), `set "image"`) {
			t.Errorf("error %v does not name the image problem and the fix", err)
		}
	})

	t.Run("agent exits: its log is the message", func(t *testing.T) {
		ns := newNamespace(t, nil)
		createPod(t, ns, "web", fixtures.GoHTTPImage)
		opts := probeAgent("app", false)
		opts.Image = fixtures.GoHTTPImage // a second gohttp: :8080 is taken in the pod
		if err := inject.Add(ctx, env.clientset, getPod(t, ns, "web"), inject.Container("kdap-agent-y", opts)); err != nil {
			t.Fatal(err)
		}
		err := inject.WaitRunning(ctx, env.clientset, ns, "web", "kdap-agent-y", time.Minute)
		// It may be seen Running for a moment before it exits; then kdap's
		// failed connection leads to CheckAlive.
		for deadline := time.Now().Add(30 * time.Second); err == nil && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			err = inject.CheckAlive(ctx, env.clientset, ns, "web", "kdap-agent-y")
		}
		t.Logf("%v", err)
		var exited *inject.AgentExitedError
		if !errors.As(err, &exited) || exited.ExitCode != 1 || !strings.Contains(exited.Message, "address already in use") {
			t.Errorf("error %v: want an AgentExitedError with exit code 1 and the log line", err)
		}
	})

	t.Run("PodSecurity baseline rejects SYS_PTRACE", func(t *testing.T) {
		ns := newNamespace(t, map[string]string{"pod-security.kubernetes.io/enforce": "baseline"})
		createPod(t, ns, "web", fixtures.GoHTTPImage)
		opts := probeAgent("app", true)
		nsObj, err := env.clientset.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := inject.CheckPodSecurity(nsObj, opts); err == nil || !strings.Contains(err.Error(), "SYS_PTRACE") {
			t.Errorf("pre-check: %v", err)
		}
		// And what the API server itself says when asked anyway.
		err = inject.Add(ctx, env.clientset, getPod(t, ns, "web"), inject.Container("kdap-agent-z", opts))
		t.Logf("%v", err)
		if err == nil || !strings.Contains(err.Error(), "admission control rejected") || !strings.Contains(err.Error(), `PodSecurity "baseline`) {
			t.Errorf("error %v: want the admission rejection with the server's PodSecurity reason", err)
		}
	})

	t.Run("RBAC: user may read pods but not add containers", func(t *testing.T) {
		ns := newNamespace(t, nil)
		createPod(t, ns, "web", fixtures.GoHTTPImage)
		user := userClient(t, ns, "viewer", rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}})
		pod, err := user.CoreV1().Pods(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("the user cannot even get the pod: %v", err)
		}
		err = inject.Add(ctx, user, pod, inject.Container("kdap-agent-w", probeAgent("app", true)))
		t.Logf("%v", err)
		if err == nil || !strings.Contains(err.Error(), `RBAC is missing verb "patch" on resource "pods/ephemeralcontainers"`) {
			t.Errorf("error %v: want the missing RBAC verb named", err)
		}
	})
}

func TestForwardReportsItsLoss(t *testing.T) {
	ns := newNamespace(t, nil)
	createPod(t, ns, "web", fixtures.GoHTTPImage)
	d, err := forward.NewDialer(env.rest, forward.URL(env.clientset, ns, "web"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := forward.Start(context.Background(), d, 0, fixtures.GoHTTPPort)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	httpGet(t, fmt.Sprintf("http://%s/healthz", f.Addr()))
	zero := int64(0)
	if err := env.clientset.CoreV1().Pods(ns).Delete(context.Background(), "web", metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	// The forward notices when the next connection finds the pod gone.
	deadline := time.After(60 * time.Second)
	for {
		if conn, err := net.DialTimeout("tcp", f.Addr(), time.Second); err == nil {
			conn.Write([]byte("GET /healthz HTTP/1.0\r\n\r\n"))
			conn.SetReadDeadline(time.Now().Add(time.Second))
			conn.Read(make([]byte, 1))
			conn.Close()
		}
		select {
		case <-f.Done():
			t.Logf("forward ended: %v", f.Err())
			if !errors.Is(f.Err(), forward.ErrLost) {
				t.Errorf("forward ended with %v, want forward.ErrLost", f.Err())
			}
			return
		case <-deadline:
			t.Fatal("forward to a deleted pod still reports itself alive after 60s")
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// userClient returns a client for a new user that has only rule in ns.
func userClient(t *testing.T, ns, user string, rule rbacv1.PolicyRule) kubernetes.Interface {
	t.Helper()
	ctx := context.Background()
	rbac := env.clientset.RbacV1()
	if _, err := rbac.Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: user}, Rules: []rbacv1.PolicyRule{rule}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := rbac.RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: user},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: user},
		Subjects:   []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: user}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := env.cluster.IssueUser(user)
	if err != nil {
		t.Fatal(err)
	}
	cfg := clientcmd.NewDefaultClientConfig(*kubeconfigFor(t, certPEM, keyPEM), nil)
	rc, err := cfg.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}
