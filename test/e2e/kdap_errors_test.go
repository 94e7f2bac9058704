//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	godap "github.com/google/go-dap"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kdap/kdap/dap"
	"github.com/kdap/kdap/dap/daptest"
	"github.com/kdap/kdap/test/fixtures"
)

// attachError attaches through kdap and returns the error the user sees,
// checking it is a showUser attach failure that arrived without a hang.
func attachError(t *testing.T, k *kdapProcess, args map[string]any) string {
	t.Helper()
	c := k.connect(t)
	c.ExpectResponse(t, c.Send("initialize", godap.InitializeRequestArguments{AdapterID: "kdap", LinesStartAt1: true, ColumnsStartAt1: true, PathFormat: "path"}))
	start := time.Now()
	resp := c.ExpectAnyResponse(t, c.Send("attach", args))
	took := time.Since(start)
	var body godap.ErrorResponseBody
	daptest.Decode(t, resp, &body)
	if resp.Success || body.Error == nil || !body.Error.ShowUser || body.Error.Id != dap.ErrIDAttachFailed {
		t.Fatalf("attach did not fail as a showUser attach error: %s", resp.Raw)
	}
	t.Logf("after %s: %s", took.Round(time.Millisecond), body.Error.Format)
	if took > 45*time.Second {
		t.Errorf("the error took %s: a user would think kdap hangs", took)
	}
	return body.Error.Format
}

func TestKdapAttachErrorsNameTheFix(t *testing.T) {
	ns := newNamespace(t, nil)
	createPod(t, ns, "gohttp", fixtures.GoHTTPImage)
	k := startKdap(t)
	ctx := context.Background()

	for _, tc := range []struct {
		name  string
		setup func(t *testing.T) map[string]any
		want  []string
	}{
		{"pod not found: close names suggested", func(t *testing.T) map[string]any {
			return map[string]any{"target": "pod/gohtp", "namespace": ns}
		}, []string{`pod "gohtp" not found in namespace`, `did you mean "gohttp"?`}},
		{"namespace not found", func(t *testing.T) map[string]any {
			return map[string]any{"target": "gohttp", "namespace": ns + "x"}
		}, []string{fmt.Sprintf(`namespace %q does not exist`, ns+"x"), fmt.Sprintf("did you mean %q", ns)}},
		{"container not found: containers listed", func(t *testing.T) map[string]any {
			return map[string]any{"target": "pod/gohttp", "namespace": ns, "container": "web"}
		}, []string{`container "web" is not in pod gohttp; its containers are: app`}},
		{"target missing", func(t *testing.T) map[string]any {
			return map[string]any{"namespace": ns}
		}, []string{`set "target" in the launch configuration`}},
		{"pod not Running", func(t *testing.T) map[string]any {
			no := false
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "pending"}, Spec: corev1.PodSpec{NodeName: env.cluster.NodeName(), AutomountServiceAccountToken: &no,
				Containers: []corev1.Container{{Name: "app", Image: "kdap.test/not-loaded:1", ImagePullPolicy: corev1.PullNever}}}}
			if _, err := env.clientset.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			return map[string]any{"target": "pod/pending", "namespace": ns}
		}, []string{`pod ` + ns + `/pending is Pending, not Running`}},
		{"debugger image cannot be pulled", func(t *testing.T) map[string]any {
			return map[string]any{"target": "pod/gohttp", "namespace": ns, "image": "kdap.test/no-such-debugger:1"}
		}, []string{`debugger image "kdap.test/no-such-debugger:1" cannot be used`, "ImagePull", `set "image"`}}, // ErrImagePull or ImagePullBackOff
		{"cluster unreachable", func(t *testing.T) map[string]any {
			cfg := kubeconfigFor(t, nil, nil)
			cfg.Clusters["kdap-test"].Server = "https://127.0.0.1:1"
			file := filepath.Join(t.TempDir(), "kubeconfig")
			if err := clientcmd.WriteToFile(*cfg, file); err != nil {
				t.Fatal(err)
			}
			return map[string]any{"target": "pod/gohttp", "namespace": ns, "kubeconfig": file}
		}, []string{"cannot reach the Kubernetes API server", "127.0.0.1:1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := attachError(t, k, tc.setup(t))
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
		})
	}
}

func TestKdapAttachRefusesWhatItCannotDebug(t *testing.T) {
	ctx := context.Background()
	k := startKdap(t)

	t.Run("PodSecurity baseline", func(t *testing.T) {
		ns := newNamespace(t, map[string]string{"pod-security.kubernetes.io/enforce": "baseline"})
		createPod(t, ns, "gohttp", fixtures.GoHTTPImage)
		msg := attachError(t, k, map[string]any{"target": "gohttp", "namespace": ns})
		for _, w := range []string{`enforces PodSecurity "baseline"`, "SYS_PTRACE", "pod-security.kubernetes.io/enforce=privileged"} {
			if !strings.Contains(msg, w) {
				t.Errorf("error %q does not contain %q", msg, w)
			}
		}
		if n := ephemeralCount(t, ns, "gohttp"); n != 0 {
			t.Errorf("%d ephemeral containers left in the pod", n)
		}
	})
	t.Run("RBAC without patch on pods/ephemeralcontainers", func(t *testing.T) {
		ns := newNamespace(t, nil)
		createPod(t, ns, "gohttp", fixtures.GoHTTPImage)
		userClient(t, ns, "dev", rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}})
		certPEM, keyPEM, err := env.cluster.IssueUser("dev")
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(t.TempDir(), "kubeconfig")
		if err := clientcmd.WriteToFile(*kubeconfigFor(t, certPEM, keyPEM), file); err != nil {
			t.Fatal(err)
		}
		msg := attachError(t, k, map[string]any{"target": "gohttp", "namespace": ns, "kubeconfig": file})
		for _, want := range []string{`RBAC is missing "patch" on "pods/ephemeralcontainers" (to add the debugger container)`, `"create" on "pods/portforward"`, "nothing was added"} {
			if !strings.Contains(msg, want) {
				t.Errorf("error %q does not contain %q", msg, want)
			}
		}
	})
	for _, tc := range []struct {
		name, image string
		want        []string
	}{
		{"not a Go program", fixtures.NotGoImage, []string{"is not a Go program", "/notgo", `set "runtime"`}},
		{"stripped Go binary", fixtures.StrippedImage, []string{"has no debug information", `-ldflags="-s -w"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := newNamespace(t, nil)
			createPod(t, ns, "target", tc.image)
			msg := attachError(t, k, map[string]any{"target": "target", "namespace": ns})
			for _, w := range append(tc.want, "exited") {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
			// The target was not disturbed.
			p, err := env.clientset.CoreV1().Pods(ns).Get(ctx, "target", metav1.GetOptions{})
			if err != nil || p.Status.Phase != corev1.PodRunning || p.Status.ContainerStatuses[0].RestartCount != 0 {
				t.Errorf("target pod after the failed attach: %v %+v", err, p.Status.ContainerStatuses)
			}
		})
	}
}
