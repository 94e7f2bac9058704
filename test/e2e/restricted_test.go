//go:build e2e

package e2e

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	godap "github.com/google/go-dap"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// restrictedPod makes a pod pass PodSecurity restricted the way hardened
// platforms ask: a non-root user for the pod, and on each container no
// capability, no privilege escalation and the runtime's seccomp profile —
// set per container, so the agent must bring its own.
func restrictedPod(p *corev1.Pod) {
	uid, yes, no := int64(65532), true, false
	p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsNonRoot: &yes, RunAsUser: &uid, RunAsGroup: &uid}
	for i := range p.Spec.Containers {
		p.Spec.Containers[i].SecurityContext = &corev1.SecurityContext{
			AllowPrivilegeEscalation: &no, Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}}
	}
}

func TestRestrictedGo(t *testing.T)     { testRestricted(t, goStaging) }
func TestRestrictedPython(t *testing.T) { testRestricted(t, pyStaging) }
func TestRestrictedNode(t *testing.T)   { testRestricted(t, nodeStaging) }
func TestRestrictedJava(t *testing.T)   { testRestricted(t, javaStaging) }

// testRestricted: a non-root target in a namespace enforcing PodSecurity
// restricted is debugged — a breakpoint stops a request with its locals,
// and the request completes on continue — by an agent with no capability,
// as non-root, under the runtime's seccomp profile.
func testRestricted(t *testing.T, service func(testing.TB) (string, stagingService)) {
	root, s := service(t)
	ns := newNamespace(t, map[string]string{"pod-security.kubernetes.io/enforce": "restricted"})
	s.servicePod(t, ns, "web", restrictedPod)
	svc := podForward(t, ns, "web", s.port)
	k := startKdap(t)
	c := attachSessionWith(t, k, map[string]any{"target": "pod/web", "namespace": ns, "localRoot": root, "runtime": s.runtime}, s.file, s.line)

	pod := getPod(t, ns, "web")
	if len(pod.Spec.EphemeralContainers) != 1 {
		t.Fatalf("%d debugger containers, want 1", len(pod.Spec.EphemeralContainers))
	}
	sc := pod.Spec.EphemeralContainers[0].SecurityContext
	if sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != 65532 || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot ||
		sc.Capabilities == nil || len(sc.Capabilities.Add) != 0 || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) ||
		sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("the agent's security context %+v is not restricted's", sc)
	}

	reply := getAsync("http://" + svc + s.request(3))
	thread, frame := expectStop(t, c, s.file, s.line)
	if got := locals(t, c, frame)[s.local]; got != s.localValue(3) {
		t.Errorf("local %s = %q, want %q", s.local, got, s.localValue(3))
	}
	c.ExpectResponse(t, c.Send("continue", godap.ContinueArguments{ThreadId: thread}))
	expectReply(t, reply, s.reply(3), 20*time.Second)
}

// TestRestrictedRefusesARootTarget: a target that runs as root (its pod
// came before the namespace enforced restricted) cannot be debugged
// there; kdap says which rule blocks it and why before adding anything.
func TestRestrictedRefusesARootTarget(t *testing.T) {
	root, s := goStaging(t)
	ns := newNamespace(t, nil)
	s.servicePod(t, ns, "web", func(*corev1.Pod) {})
	ctx := context.Background()
	nsObj, err := env.clientset.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if nsObj.Labels == nil {
		nsObj.Labels = map[string]string{}
	}
	nsObj.Labels["pod-security.kubernetes.io/enforce"] = "restricted"
	if _, err := env.clientset.CoreV1().Namespaces().Update(ctx, nsObj, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	k := startKdap(t)
	c := k.connect(t)
	c.ExpectResponse(t, c.Send("initialize", godap.InitializeRequestArguments{AdapterID: "kdap", LinesStartAt1: true, ColumnsStartAt1: true, PathFormat: "path"}))
	resp := c.ExpectAnyResponse(t, c.Send("attach", map[string]any{"target": "pod/web", "namespace": ns, "localRoot": root, "runtime": "go"}))
	for _, want := range []string{`enforces PodSecurity "restricted"`, "baseline allows no capability", "SYS_PTRACE", "Set a non-root runAsUser"} {
		if resp.Success || !strings.Contains(resp.ErrorText(), want) {
			t.Errorf("attach to a root target under restricted: %s; want %q", resp.Raw, want)
		}
	}
	if n := ephemeralCount(t, ns, "web"); n != 0 {
		t.Errorf("the refused attach added %d containers", n)
	}
}
