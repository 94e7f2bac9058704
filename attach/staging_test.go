package attach

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func probedPod(p *corev1.Probe) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "staging"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", LivenessProbe: p}}}}
}

func httpProbe(period, timeout, failures int32) *corev1.Probe {
	return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080)}},
		PeriodSeconds: period, TimeoutSeconds: timeout, FailureThreshold: failures}
}

func TestStopBudgetFromTheLivenessProbe(t *testing.T) {
	for _, tc := range []struct {
		name  string
		probe *corev1.Probe
		want  time.Duration
	}{
		{"none", nil, 0},
		{"http 2s x3, 1s timeout", httpProbe(2, 1, 3), 5 * time.Second},
		{"defaults: 10s x3, 1s", httpProbe(0, 0, 0), 21 * time.Second},
		{"tcp passes while stopped", &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(8080)}}}, 0},
	} {
		got, _, why := stopBudget(probedPod(tc.probe), "app")
		if got != tc.want {
			t.Errorf("%s: budget %s, want %s (%s)", tc.name, got, tc.want, why)
		}
		if got > 0 && !strings.Contains(why, "liveness probe") {
			t.Errorf("%s: reason %q does not name the probe", tc.name, why)
		}
	}
}

func TestStagingDefaultsAndLimits(t *testing.T) {
	pod := probedPod(httpProbe(2, 1, 3))
	g, notes, err := stagingFor(Args{}, pod, "app", Policy{})
	if err != nil || g.StopLimit != 2500*time.Millisecond || g.Snapshot {
		t.Fatalf("default staging = %+v, %v; want stop mode, auto limit 2.5s (one probe failure of slack)", g, err)
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "about 5s before the kubelet restarts container app") {
		t.Errorf("notes = %q", notes)
	}

	g, notes, _ = stagingFor(Args{StopLimit: "off"}, pod, "app", Policy{})
	if g.StopLimit != 0 || !strings.Contains(strings.Join(notes, "\n"), "warning") {
		t.Errorf("stopLimit off: %+v %q", g, notes)
	}

	g, notes, _ = stagingFor(Args{StopLimit: "off"}, pod, "app", Policy{MaxStop: 3 * time.Second})
	if g.StopLimit != 3*time.Second || !strings.Contains(strings.Join(notes, "\n"), "refused by namespace staging's annotation kdap.dev/max-stop=3s") {
		t.Errorf("max-stop over off: %+v %q", g, notes)
	}

	if _, _, err := stagingFor(Args{Mode: ModeStop}, pod, "app", Policy{SnapshotOnly: true}); err == nil || !strings.Contains(err.Error(), "kdap.dev/mode=snapshot") {
		t.Errorf("stop mode in a snapshot-only namespace: %v", err)
	}
	g, _, _ = stagingFor(Args{}, pod, "app", Policy{SnapshotOnly: true, MaxSession: time.Minute})
	if !g.Snapshot || !strings.Contains(g.SnapshotBy, "kdap.dev/mode=snapshot") || g.SessionLimit != time.Minute {
		t.Errorf("snapshot-only namespace: %+v", g)
	}
}

func TestStopLimitArgument(t *testing.T) {
	for in, want := range map[string]time.Duration{`{"target":"x","stopLimit":10}`: 10 * time.Second, `{"target":"x","stopLimit":"2.5"}`: 2500 * time.Millisecond, `{"target":"x","stopLimit":"1m"}`: time.Minute} {
		a, err := ParseArgs(json.RawMessage(in))
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if _, _, d, _ := a.StopLimit.parse(); d != want {
			t.Errorf("%s: %s, want %s", in, d, want)
		}
	}
	if _, err := ParseArgs(json.RawMessage(`{"target":"x","stopLimit":"soon"}`)); err == nil || !strings.Contains(err.Error(), `"auto"`) {
		t.Errorf("bad stopLimit: %v", err)
	}
	if _, err := ParseArgs(json.RawMessage(`{"target":"x","mode":"pause"}`)); err == nil || !strings.Contains(err.Error(), `"snapshot"`) {
		t.Errorf("bad mode: %v", err)
	}
}

func TestPolicyAnnotations(t *testing.T) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "staging", Annotations: map[string]string{
		AnnotationMode: "snapshot", AnnotationMaxStop: "10s", AnnotationMaxSession: "30m"}}}
	p, err := ReadPolicy(ns)
	if err != nil || !p.SnapshotOnly || p.MaxStop != 10*time.Second || p.MaxSession != 30*time.Minute {
		t.Fatalf("policy = %+v, %v", p, err)
	}
	if err := p.refuseRaw("staging"); err == nil || !strings.Contains(err.Error(), "kdap.dev/mode=snapshot") {
		t.Errorf("kdap attach in a limited namespace: %v", err)
	}
	ns.Annotations[AnnotationMaxStop] = "ten"
	if _, err := ReadPolicy(ns); err == nil || !strings.Contains(err.Error(), "kdap.dev/max-stop") {
		t.Errorf("malformed annotation: %v", err)
	}
}

func TestRestartCause(t *testing.T) {
	for _, tc := range []struct {
		t      *corev1.ContainerStateTerminated
		killed string
		want   string
	}{
		{&corev1.ContainerStateTerminated{Reason: "Error", ExitCode: 137}, "Container app failed liveness probe, will be restarted", "the kubelet killed it: Container app failed liveness probe"},
		{&corev1.ContainerStateTerminated{Reason: "OOMKilled", ExitCode: 137}, "", "OOMKilled"},
		{&corev1.ContainerStateTerminated{Reason: "Error", ExitCode: 3}, "", "exited with code 3"},
		{nil, "", "not reported"},
	} {
		if got := restartCause(tc.t, tc.killed); !strings.Contains(got, tc.want) {
			t.Errorf("restartCause(%+v, %q) = %q, want it to say %q", tc.t, tc.killed, got, tc.want)
		}
	}
}
