package inject

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	psapi "k8s.io/pod-security-admission/api"
	psapolicy "k8s.io/pod-security-admission/policy"

	"github.com/kdap/kdap/agentapi"
)

func TestContainer(t *testing.T) {
	no, yes := false, true
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
			name: "no ptrace, as the target's uid: restricted's settings",
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
					SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: &no, RunAsUser: &uid, RunAsNonRoot: &yes,
						Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}},
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
		key := a.key
		if key == "" {
			key = "k1"
		}
		ec := Container(a.name, Options{Image: a.image, Target: a.target, Port: a.port, Key: key})
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
	key                 string // agentapi.EnvKey; "" is k1
}

func TestFindRunning(t *testing.T) {
	pod := podWith(
		agentState{"kdap-agent-old", "app", "img:1", 47474, false, ""},
		agentState{"kdap-agent-anotherkdap", "app", "img:1", 47479, true, "k2"},
		agentState{"kdap-agent-live", "app", "img:1", 47475, true, ""},
		agentState{"kdap-agent-other", "sidecar", "img:1", 47476, true, ""},
		agentState{"kdap-agent-newimg", "app", "img:2", 47477, true, ""},
		agentState{"debugger-by-hand", "app", "img:1", 47478, true, ""},
	)
	for _, tc := range []struct {
		container, image, key string
		want                  Agent
		ok                    bool
	}{
		{"app", "img:1", "k1", Agent{Name: "kdap-agent-live", Port: 47475}, true},
		{"app", "img:1", "k2", Agent{Name: "kdap-agent-anotherkdap", Port: 47479}, true},
		{"app", "img:1", "k3", Agent{}, false},
		{"sidecar", "img:1", "k1", Agent{Name: "kdap-agent-other", Port: 47476}, true},
		{"app", "img:2", "k1", Agent{Name: "kdap-agent-newimg", Port: 47477}, true},
		{"app", "img:3", "k1", Agent{}, false},
		{"nobody", "img:1", "k1", Agent{}, false},
	} {
		got, ok := FindRunning(pod, tc.container, tc.image, tc.key)
		if ok != tc.ok || got != tc.want {
			t.Errorf("FindRunning(%s, %s, %s) = %+v, %v; want %+v, %v", tc.container, tc.image, tc.key, got, ok, tc.want, tc.ok)
		}
	}
}

func TestFreePortSkipsPortsOfOtherAgents(t *testing.T) {
	if got := FreePort(&corev1.Pod{}); got != agentapi.DefaultPort {
		t.Errorf("empty pod: %d", got)
	}
	pod := podWith(agentState{"kdap-agent-a", "app", "i", agentapi.DefaultPort, false, ""}, agentState{"kdap-agent-b", "x", "i", agentapi.DefaultPort + 1, true, ""})
	if got := FreePort(pod); got != agentapi.DefaultPort+2 {
		t.Errorf("FreePort = %d, want %d (terminated agents keep their port in the spec too)", got, agentapi.DefaultPort+2)
	}
}

func TestNewNameAvoidsTakenNames(t *testing.T) {
	pod := podWith(agentState{"kdap-agent-aaaaa", "app", "i", 1, true, ""})
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
	uid := int64(1000)
	root := int64(0)
	for _, tc := range []struct {
		name    string
		level   string
		o       Options
		wantErr []string
	}{
		{"unlabelled/ptrace", "", Options{Ptrace: true, Runtime: "go"}, nil},
		{"privileged/ptrace", "privileged", Options{Ptrace: true, Runtime: "go"}, nil},
		{"baseline/ptrace", "baseline", Options{Ptrace: true, Runtime: "python"},
			[]string{`enforces PodSecurity "baseline"`, "baseline allows no capability", "SYS_PTRACE", "Python (debugpy)", "Set a non-root runAsUser", "enforce=privileged"}},
		{"restricted/ptrace", "restricted", Options{Ptrace: true, Runtime: "go"}, []string{`enforces PodSecurity "restricted"`, "SYS_PTRACE", "enforce=privileged"}},
		{"baseline/root without ptrace", "baseline", Options{Runtime: "node"}, nil},
		{"restricted/root without ptrace", "restricted", Options{Runtime: "node"},
			[]string{`enforces PodSecurity "restricted"`, "restricted requires runAsNonRoot", "Node.js (js-debug)", "enforce=baseline"}},
		{"restricted/uid 0", "restricted", Options{Runtime: "java", RunAsUser: &root}, []string{"restricted requires runAsNonRoot"}},
		{"restricted/non-root", "restricted", Options{Runtime: "go", RunAsUser: &uid, Seccomp: true}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckPodSecurity(ns(tc.level), tc.o)
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Errorf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want one containing %q", tc.wantErr)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// Admits agrees with the PodSecurity admission's own checks: the agent's
// container, added to a pod that passes restricted, passes the level
// Admits names and breaks the next one.
func TestAdmitsAgreesWithPodSecurityAdmission(t *testing.T) {
	eval, err := psapolicy.NewEvaluator(psapolicy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	uid, yes, no := int64(65532), true, false
	// The target sets everything on its container, so the agent's own
	// settings decide (but for the pod's seccomp profile, where noted).
	target := corev1.PodSpec{
		SecurityContext: &corev1.PodSecurityContext{},
		Containers: []corev1.Container{{Name: "app", Image: "app", SecurityContext: &corev1.SecurityContext{
			RunAsNonRoot: &yes, RunAsUser: &uid, AllowPrivilegeEscalation: &no, Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}}}},
	}
	passes := func(level string, o Options, podSeccomp bool) (bool, string) {
		spec := target.DeepCopy()
		if podSeccomp {
			spec.SecurityContext.SeccompProfile = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}
		}
		spec.EphemeralContainers = []corev1.EphemeralContainer{Container("kdap-agent-x", o)}
		var why []string
		for _, r := range eval.EvaluatePod(psapi.LevelVersion{Level: psapi.Level(level), Version: psapi.LatestVersion()}, &metav1.ObjectMeta{}, spec) {
			if !r.Allowed {
				why = append(why, r.ForbiddenReason+": "+r.ForbiddenDetail)
			}
		}
		return len(why) == 0, strings.Join(why, "; ")
	}
	for _, o := range []Options{
		{Image: "i", Target: "app", Runtime: "go", Ptrace: true},
		{Image: "i", Target: "app", Runtime: "node"},
		{Image: "i", Target: "app", Runtime: "go", RunAsUser: &uid, RunAsGroup: &uid, Seccomp: true},
	} {
		level, _ := Admits(o)
		if ok, why := passes(level, o, false); !ok {
			t.Errorf("%+v: Admits says %s, which refuses it: %s", o, level, why)
		}
		if next := map[string]string{Privileged: Baseline, Baseline: Restricted}[level]; next != "" {
			if ok, _ := passes(next, o, false); ok {
				t.Errorf("%+v: Admits says %s, yet %s admits it too", o, level, next)
			}
		}
	}
	// Without the seccomp profile (a namespace that does not demand it)
	// the pod's own profile still applies to the agent.
	if ok, why := passes(Restricted, Options{Image: "i", Target: "app", RunAsUser: &uid}, true); !ok {
		t.Errorf("an agent under the pod's RuntimeDefault profile: %s", why)
	}
	if ok, _ := passes(Restricted, Options{Image: "i", Target: "app", RunAsUser: &uid}, false); ok {
		t.Errorf("an agent with no seccomp profile passed restricted")
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
	if sc := c.SecurityContext; sc.Capabilities == nil || len(sc.Capabilities.Add) != 0 || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) ||
		*sc.RunAsUser != 1000 || *sc.RunAsGroup != 1000 || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
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
