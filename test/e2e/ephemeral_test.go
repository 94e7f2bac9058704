//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kdap/kdap/test/fixtures"
)

// probeReport mirrors the JSON the probe prints (test/fixtures/probe).
type probeReport struct {
	PID         int    `json:"pid"`
	Exe         string `json:"exe"`
	Cmdline     string `json:"cmdline"`
	UID         int    `json:"uid"`
	Ptrace      string `json:"ptrace"`
	TargetState string `json:"targetState"`
}

// TestEphemeralContainerSeesTargetAndPortForwardReachesIt walks the path kdap
// is built on: a running pod gets an ephemeral container that shares the
// target container's PID namespace and may ptrace it; port-forward, with each
// of client-go's three dialers, then reaches a port on the pod's loopback
// (where kdap's agent will listen) and the target's own port.
func TestEphemeralContainerSeesTargetAndPortForwardReachesIt(t *testing.T) {
	ns := newNamespace(t, nil)
	createPod(t, ns, "gohttp", fixtures.GoHTTPImage)

	ctx := context.Background()
	pods := env.clientset.CoreV1().Pods(ns)
	pod, err := pods.Get(ctx, "gohttp", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod.Spec.EphemeralContainers = append(pod.Spec.EphemeralContainers, corev1.EphemeralContainer{
		EphemeralContainerCommon: corev1.EphemeralContainerCommon{
			Name:                     "probe",
			Image:                    fixtures.ProbeImage,
			ImagePullPolicy:          corev1.PullNever,
			TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
			SecurityContext: &corev1.SecurityContext{
				Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"SYS_PTRACE"}},
			},
		},
		TargetContainerName: "app",
	})
	patched := time.Now()
	if _, err := pods.UpdateEphemeralContainers(ctx, "gohttp", pod, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("add ephemeral container: %v", err)
	}
	waitPod(t, ns, "gohttp", 60*time.Second, "running its ephemeral container", func(p *corev1.Pod) (bool, error) {
		for _, s := range p.Status.EphemeralContainerStatuses {
			if s.Name != "probe" {
				continue
			}
			if term := s.State.Terminated; term != nil {
				return false, fmt.Errorf("ephemeral container terminated: %s (exit %d): %s", term.Reason, term.ExitCode, term.Message)
			}
			if w := s.State.Waiting; w != nil && isFatalWaitReason(w.Reason) {
				return false, fmt.Errorf("ephemeral container: %s: %s", w.Reason, w.Message)
			}
			return s.State.Running != nil, nil
		}
		return false, nil
	})
	t.Logf("ephemeral container probe Running %s after the patch", time.Since(patched).Round(time.Millisecond))

	var logged probeReport
	var logLine string
	for deadline := time.Now().Add(20 * time.Second); ; {
		logLine = strings.TrimSpace(podLogs(t, ns, "gohttp", "probe"))
		if logLine != "" || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := json.Unmarshal([]byte(logLine), &logged); err != nil {
		t.Fatalf("probe log is not its JSON report: %q: %v", logLine, err)
	}
	t.Logf("probe saw: %s", logLine)
	if logged.PID != 1 || logged.Exe != "/gohttp" || logged.UID != 65532 {
		t.Errorf("probe saw pid %d exe %q uid %d; want the target container's process: pid 1, /gohttp, uid 65532", logged.PID, logged.Exe, logged.UID)
	}
	if logged.Ptrace != "attached and detached" {
		t.Errorf("ptrace of the target from the ephemeral container: %s", logged.Ptrace)
	}

	for i, kind := range dialerKinds {
		t.Run(kind, func(t *testing.T) {
			start := time.Now()
			dialer := portForwardDialer(t, ns, "gohttp", kind)
			local := []int{forwardPort(t, dialer, fixtures.ProbePort).LocalPort, forwardPort(t, dialer, fixtures.GoHTTPPort).LocalPort}
			ready := time.Since(start)

			body := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/", local[0]))
			var served probeReport
			if err := json.Unmarshal([]byte(body), &served); err != nil || served != logged {
				t.Errorf("probe port %d on the pod's loopback answered %q; want the report %q", fixtures.ProbePort, body, logLine)
			}
			hello := strings.TrimSpace(httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/hello?name=%s", local[1], kind)))
			if want := fmt.Sprintf("hello, %s (request %d)", kind, i+1); hello != want {
				t.Errorf("target answered %q; want %q", hello, want)
			}
			t.Logf("%s dialer: forward ready in %s; pod 127.0.0.1:%d -> %d bytes of probe report; target :%d -> %q",
				kind, ready.Round(time.Millisecond), fixtures.ProbePort, len(body), fixtures.GoHTTPPort, hello)
		})
	}
}
