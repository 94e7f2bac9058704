package inject

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kdap/kdap/agentapi"
)

func TestContainer(t *testing.T) {
	no := false
	uid := int64(65532)
	for _, tc := range []struct {
		name string
		opts Options
		want corev1.EphemeralContainer
	}{
		{
			name: "go: ptrace, default user",
			opts: Options{Image: "kdap/go:1", Target: "app", Runtime: "go", Port: 47474, TTL: 15 * time.Minute, Ptrace: true},
			want: corev1.EphemeralContainer{
				EphemeralContainerCommon: corev1.EphemeralContainerCommon{
					Name: "kdap-agent-abcde", Image: "kdap/go:1", ImagePullPolicy: corev1.PullIfNotPresent,
					Env: []corev1.EnvVar{
						{Name: agentapi.EnvListen, Value: "127.0.0.1:47474"},
						{Name: agentapi.EnvRuntime, Value: "go"},
						{Name: agentapi.EnvTTL, Value: "15m0s"},
					},
					TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
					SecurityContext: &corev1.SecurityContext{
						AllowPrivilegeEscalation: &no,
						Capabilities:             &corev1.Capabilities{Add: []corev1.Capability{"SYS_PTRACE"}},
					},
				},
				TargetContainerName: "app",
			},
		},
		{
			name: "no ptrace, as the target's uid",
			opts: Options{Image: "kdap/node:1", Target: "web", Runtime: "node", Port: 47475, TTL: time.Minute, RunAsUser: &uid},
			want: corev1.EphemeralContainer{
				EphemeralContainerCommon: corev1.EphemeralContainerCommon{
					Name: "kdap-agent-abcde", Image: "kdap/node:1", ImagePullPolicy: corev1.PullIfNotPresent,
					Env: []corev1.EnvVar{
						{Name: agentapi.EnvListen, Value: "127.0.0.1:47475"},
						{Name: agentapi.EnvRuntime, Value: "node"},
						{Name: agentapi.EnvTTL, Value: "1m0s"},
					},
					TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
					SecurityContext:          &corev1.SecurityContext{AllowPrivilegeEscalation: &no, RunAsUser: &uid},
				},
				TargetContainerName: "web",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, Container("kdap-agent-abcde", tc.opts)); diff != "" {
				t.Errorf("Container (-want +got):\n%s", diff)
			}
		})
	}
}

// podWith returns a pod whose ephemeral containers are the given agents
// (name → target, port, running).
func podWith(agents ...agentState) *corev1.Pod {
	pod := &corev1.Pod{}
	for _, a := range agents {
		ec := Container(a.name, Options{Image: a.image, Target: a.target, Port: a.port})
		pod.Spec.EphemeralContainers = append(pod.Spec.EphemeralContainers, ec)
		st := corev1.ContainerStatus{Name: a.name}
		if a.running {
			st.State.Running = &corev1.ContainerStateRunning{}
		} else {
			st.State.Terminated = &corev1.ContainerStateTerminated{ExitCode: 0}
		}
		pod.Status.EphemeralContainerStatuses = append(pod.Status.EphemeralContainerStatuses, st)
	}
	return pod
}

type agentState struct {
	name, target, image string
	port                int
	running             bool
}

func TestFindRunning(t *testing.T) {
	pod := podWith(
		agentState{"kdap-agent-old", "app", "img:1", 47474, false},
		agentState{"kdap-agent-live", "app", "img:1", 47475, true},
		agentState{"kdap-agent-other", "sidecar", "img:1", 47476, true},
		agentState{"kdap-agent-newimg", "app", "img:2", 47477, true},
		agentState{"debugger-by-hand", "app", "img:1", 47478, true},
	)
	for _, tc := range []struct {
		container, image string
		want             Agent
		ok               bool
	}{
		{"app", "img:1", Agent{Name: "kdap-agent-live", Port: 47475}, true},
		{"sidecar", "img:1", Agent{Name: "kdap-agent-other", Port: 47476}, true},
		{"app", "img:2", Agent{Name: "kdap-agent-newimg", Port: 47477}, true},
		{"app", "img:3", Agent{}, false},
		{"nobody", "img:1", Agent{}, false},
	} {
		got, ok := FindRunning(pod, tc.container, tc.image)
		if ok != tc.ok || got != tc.want {
			t.Errorf("FindRunning(%s, %s) = %+v, %v; want %+v, %v", tc.container, tc.image, got, ok, tc.want, tc.ok)
		}
	}
}

func TestFreePortSkipsPortsOfOtherAgents(t *testing.T) {
	if got := FreePort(&corev1.Pod{}); got != agentapi.DefaultPort {
		t.Errorf("empty pod: %d", got)
	}
	pod := podWith(agentState{"kdap-agent-a", "app", "i", agentapi.DefaultPort, false}, agentState{"kdap-agent-b", "x", "i", agentapi.DefaultPort + 1, true})
	if got := FreePort(pod); got != agentapi.DefaultPort+2 {
		t.Errorf("FreePort = %d, want %d (terminated agents keep their port in the spec too)", got, agentapi.DefaultPort+2)
	}
}

func TestNewNameAvoidsTakenNames(t *testing.T) {
	pod := podWith(agentState{"kdap-agent-aaaaa", "app", "i", 1, true})
	suffixes := []string{"aaaaa", "bbbbb"}
	i := 0
	got := NewName(pod, func() string { i++; return suffixes[i-1] })
	if got != "kdap-agent-bbbbb" {
		t.Errorf("NewName = %s", got)
	}
}

func TestCheckPodSecurity(t *testing.T) {
	ns := func(level string) *corev1.Namespace {
		n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team"}}
		if level != "" {
			n.Labels = map[string]string{"pod-security.kubernetes.io/enforce": level}
		}
		return n
	}
	for _, tc := range []struct {
		level   string
		ptrace  bool
		wantErr string
	}{
		{"", true, ""},
		{"privileged", true, ""},
		{"baseline", true, `enforces PodSecurity "baseline", which forbids the SYS_PTRACE capability`},
		{"restricted", true, `enforces PodSecurity "restricted"`},
		{"restricted", false, ""},
	} {
		t.Run(fmt.Sprintf("%s/ptrace=%v", tc.level, tc.ptrace), func(t *testing.T) {
			err := CheckPodSecurity(ns(tc.level), Options{Ptrace: tc.ptrace, Runtime: "go"})
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestTargetUser(t *testing.T) {
	u := func(v int64) *int64 { return &v }
	pod := &corev1.Pod{Spec: corev1.PodSpec{
		SecurityContext: &corev1.PodSecurityContext{RunAsUser: u(1000), RunAsGroup: u(1000)},
		Containers: []corev1.Container{
			{Name: "app"},
			{Name: "sidecar", SecurityContext: &corev1.SecurityContext{RunAsUser: u(2000)}},
		},
	}}
	for _, tc := range []struct {
		container string
		uid, gid  int64
	}{{"app", 1000, 1000}, {"sidecar", 2000, 1000}} {
		uid, gid := TargetUser(pod, tc.container)
		if uid == nil || gid == nil || *uid != tc.uid || *gid != tc.gid {
			t.Errorf("TargetUser(%s) = %v, %v; want %d, %d", tc.container, uid, gid, tc.uid, tc.gid)
		}
	}
	if uid, gid := TargetUser(&corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}}}, "app"); uid != nil || gid != nil {
		t.Errorf("a spec without users gave %v, %v", uid, gid)
	}
	c := Container("kdap-agent-x", Options{Image: "i", Target: "app", RunAsUser: u(1000), RunAsGroup: u(1000)})
	if sc := c.SecurityContext; sc.Capabilities != nil || *sc.RunAsUser != 1000 || *sc.RunAsGroup != 1000 {
		t.Errorf("agent as the target's user: %+v", sc)
	}
}

// A Running agent of the container names the runtime "auto" would guess;
// an exited one (a wrong guess) and another container's do not.
func TestRunningRuntimeIsTheRunningAgentsOfTheContainer(t *testing.T) {
	agent := func(name, target, runtime string) corev1.EphemeralContainer {
		return corev1.EphemeralContainer{TargetContainerName: target, EphemeralContainerCommon: corev1.EphemeralContainerCommon{
			Name: name, Env: []corev1.EnvVar{{Name: agentapi.EnvRuntime, Value: runtime}}}}
	}
	pod := &corev1.Pod{
		Spec: corev1.PodSpec{EphemeralContainers: []corev1.EphemeralContainer{
			agent(NamePrefix+"exited", "app", "go"), agent(NamePrefix+"sidecar", "proxy", "go"), agent(NamePrefix+"py", "app", "python"),
		}},
		Status: corev1.PodStatus{EphemeralContainerStatuses: []corev1.ContainerStatus{
			{Name: NamePrefix + "exited", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1}}},
			{Name: NamePrefix + "sidecar", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}},
			{Name: NamePrefix + "py", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}},
		}},
	}
	if rt, name := RunningRuntime(pod, "app"); rt != "python" || name != NamePrefix+"py" {
		t.Errorf("RunningRuntime(app) = %q, %q; want python, %s", rt, name, NamePrefix+"py")
	}
	if rt, _ := RunningRuntime(pod, "web"); rt != "" {
		t.Errorf("RunningRuntime(web) = %q, want none", rt)
	}
}
