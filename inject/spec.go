// Package inject adds kdap's agent to a running pod as an ephemeral
// container: the container spec (pure functions), the single patch to the
// pod's ephemeralcontainers subresource, the wait until it runs (with the
// kubelet's reason when it does not), and finding a live agent to reuse.
// It knows nothing of DAP.
package inject

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/kdap/kdap/agentapi"
	"github.com/kdap/kdap/runtimes"
)

// NamePrefix starts the name of every container kdap injects, so users and
// kdap recognise them in `kubectl describe pod`.
const NamePrefix = "kdap-agent-"

// Options describe the agent to inject.
type Options struct {
	Image      string        // debugger image for the runtime
	Target     string        // name of the container whose process is debugged
	Runtime    string        // runtime the agent should expect (auto lets it detect)
	Port       int           // loopback port (see FreePort)
	TTL        time.Duration // idle time before the agent exits
	Ptrace     bool          // add SYS_PTRACE (runtimes whose debugger ptraces the target)
	RunAsUser  *int64        // run as this uid (the target's, when known)
	RunAsGroup *int64        // and this gid
	// Seccomp asks for the runtime's default seccomp profile, which
	// PodSecurity restricted requires (and which refuses perf_event_open,
	// so it is set only where the namespace demands it).
	Seccomp bool
	Lazy    bool // the agent attaches no debugger until a session comes (diagnostics)
	// ContainerID is the target container's ID from the pod's status: the
	// agent debugs only processes whose cgroup names it.
	ContainerID string
	// Key is the public key (agentapi.EnvKey) whose signature the agent
	// asks of every connection; an agent is reused only by a kdap that
	// holds it.
	Key string
	// InjectedBy and InjectedAt are recorded in the container's spec,
	// which cannot be changed once added: who added it, and when.
	InjectedBy string
	InjectedAt time.Time
}

// Environment variables that record, in an agent's spec, who added it and
// when (the agent itself ignores them).
const (
	EnvInjectedBy = "KDAP_INJECTED_BY"
	EnvInjectedAt = "KDAP_INJECTED_AT"
)

// Agent is an injected agent container.
type Agent struct {
	Name string
	Port int
}

// Container builds the ephemeral container for an agent named name. It
// shares the target container's PID namespace (targetContainerName), keeps
// its log as the termination message when it fails, and asks for no
// privilege beyond SYS_PTRACE where the runtime needs it. As a non-root
// user it drops every capability and says it runs as non-root, which is
// what PodSecurity restricted asks of a container.
func Container(name string, o Options) corev1.EphemeralContainer {
	no, yes := false, true
	sc := &corev1.SecurityContext{AllowPrivilegeEscalation: &no, RunAsUser: o.RunAsUser, RunAsGroup: o.RunAsGroup}
	switch {
	case o.Ptrace:
		sc.Capabilities = &corev1.Capabilities{Add: []corev1.Capability{"SYS_PTRACE"}}
	case o.nonRoot():
		sc.Capabilities = &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}
		sc.RunAsNonRoot = &yes
	}
	if o.Seccomp {
		sc.SeccompProfile = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}
	}
	env := []corev1.EnvVar{
		{Name: agentapi.EnvListen, Value: fmt.Sprintf("127.0.0.1:%d", o.Port)},
		{Name: agentapi.EnvRuntime, Value: o.Runtime},
		{Name: agentapi.EnvTTL, Value: o.TTL.String()},
	}
	if o.Key != "" {
		env = append(env, corev1.EnvVar{Name: agentapi.EnvKey, Value: o.Key})
	}
	if o.Lazy {
		env = append(env, corev1.EnvVar{Name: agentapi.EnvLazy, Value: "true"})
	}
	if o.ContainerID != "" {
		env = append(env, corev1.EnvVar{Name: agentapi.EnvContainerID, Value: o.ContainerID})
	}
	if o.InjectedBy != "" {
		env = append(env, corev1.EnvVar{Name: EnvInjectedBy, Value: o.InjectedBy})
	}
	if !o.InjectedAt.IsZero() {
		env = append(env, corev1.EnvVar{Name: EnvInjectedAt, Value: o.InjectedAt.UTC().Format(time.RFC3339)})
	}
	return corev1.EphemeralContainer{
		EphemeralContainerCommon: corev1.EphemeralContainerCommon{
			Name:                     name,
			Image:                    o.Image,
			ImagePullPolicy:          corev1.PullIfNotPresent,
			Env:                      env,
			TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
			SecurityContext:          sc,
		},
		TargetContainerName: o.Target,
	}
}

// FreePort is the port a new agent in pod should use: agentapi.DefaultPort, or the
// next one no other kdap agent in the pod was given (agents share the pod's
// network namespace).
func FreePort(pod *corev1.Pod) int {
	used := map[int]bool{}
	for _, ec := range pod.Spec.EphemeralContainers {
		if p := agentPort(ec); p != 0 {
			used[p] = true
		}
	}
	port := agentapi.DefaultPort
	for used[port] {
		port++
	}
	return port
}

// FindRunning returns a kdap agent in pod that targets container, uses the
// given image, opens to key (agentapi.EnvKey: another kdap's agent would
// refuse this one), and is Running, if there is one.
func FindRunning(pod *corev1.Pod, container, image, key string) (Agent, bool) {
	running := map[string]bool{}
	for _, st := range pod.Status.EphemeralContainerStatuses {
		if st.State.Running != nil {
			running[st.Name] = true
		}
	}
	for _, ec := range pod.Spec.EphemeralContainers {
		if !strings.HasPrefix(ec.Name, NamePrefix) || ec.TargetContainerName != container || ec.Image != image || !running[ec.Name] || envOf(ec, agentapi.EnvKey) != key {
			continue
		}
		if port := agentPort(ec); port != 0 {
			return Agent{Name: ec.Name, Port: port}, true
		}
	}
	return Agent{}, false
}

// RunningRuntime returns the runtime a Running agent of container debugs
// (as kdap started it), and that agent's name: a runtime left to "auto"
// is then the one already proven right, with nothing to read.
func RunningRuntime(pod *corev1.Pod, container string) (runtime, agent string) {
	running := map[string]bool{}
	for _, st := range pod.Status.EphemeralContainerStatuses {
		running[st.Name] = st.State.Running != nil
	}
	for _, ec := range pod.Spec.EphemeralContainers {
		if !strings.HasPrefix(ec.Name, NamePrefix) || ec.TargetContainerName != container || !running[ec.Name] {
			continue
		}
		for _, e := range ec.Env {
			if e.Name == agentapi.EnvRuntime && e.Value != "" && e.Value != "auto" {
				return e.Value, ec.Name
			}
		}
	}
	return "", ""
}

// NewName returns an agent name not yet used in pod.
func NewName(pod *corev1.Pod, suffix func() string) string {
	taken := map[string]bool{}
	for _, ec := range pod.Spec.EphemeralContainers {
		taken[ec.Name] = true
	}
	for {
		if name := NamePrefix + suffix(); !taken[name] {
			return name
		}
	}
}

// envOf is the value ec's spec gives the variable name.
func envOf(ec corev1.EphemeralContainer, name string) string {
	for _, e := range ec.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

func agentPort(ec corev1.EphemeralContainer) int {
	if !strings.HasPrefix(ec.Name, NamePrefix) {
		return 0
	}
	for _, e := range ec.Env {
		if e.Name != agentapi.EnvListen {
			continue
		}
		if i := strings.LastIndexByte(e.Value, ':'); i >= 0 {
			if p, err := strconv.Atoi(e.Value[i+1:]); err == nil {
				return p
			}
		}
	}
	return 0
}

// TargetUser is the uid and gid the pod spec runs container as (container
// settings over the pod's), or nil when the spec leaves them to the image.
func TargetUser(pod *corev1.Pod, container string) (uid, gid *int64) {
	if psc := pod.Spec.SecurityContext; psc != nil {
		uid, gid = psc.RunAsUser, psc.RunAsGroup
	}
	for _, c := range pod.Spec.Containers {
		if c.Name == container && c.SecurityContext != nil {
			if c.SecurityContext.RunAsUser != nil {
				uid = c.SecurityContext.RunAsUser
			}
			if c.SecurityContext.RunAsGroup != nil {
				gid = c.SecurityContext.RunAsGroup
			}
		}
	}
	return uid, gid
}

// TargetNonRoot says the pod spec requires container to run as non-root
// (runAsNonRoot, the container's setting over the pod's).
func TargetNonRoot(pod *corev1.Pod, container string) bool {
	var nonRoot *bool
	if psc := pod.Spec.SecurityContext; psc != nil {
		nonRoot = psc.RunAsNonRoot
	}
	for _, c := range pod.Spec.Containers {
		if c.Name == container && c.SecurityContext != nil && c.SecurityContext.RunAsNonRoot != nil {
			nonRoot = c.SecurityContext.RunAsNonRoot
		}
	}
	return nonRoot != nil && *nonRoot
}

// nonRoot says the agent runs as a user other than root.
func (o Options) nonRoot() bool { return o.RunAsUser != nil && *o.RunAsUser != 0 }

// PodSecurity levels, from the most permissive.
const (
	Privileged = "privileged"
	Baseline   = "baseline"
	Restricted = "restricted"
)

var levelRank = map[string]int{Privileged: 0, Baseline: 1, Restricted: 2}

// PodSecurityLevel is the PodSecurity level enforced in a namespace
// (privileged when unlabelled).
func PodSecurityLevel(ns *corev1.Namespace) string {
	if level := ns.Labels["pod-security.kubernetes.io/enforce"]; level != "" {
		return level
	}
	return Privileged
}

// Admits is the strictest PodSecurity level the agent's container passes,
// and, when that is not restricted, the rule of the next level it breaks
// and why the agent needs what breaks it.
func Admits(o Options) (level, rule string) {
	switch {
	case o.Ptrace:
		return Privileged, fmt.Sprintf("baseline allows no capability beyond the container runtime's defaults, and the %s debugger needs SYS_PTRACE "+
			"to attach to a process of another user (the target runs as root, or as a user its pod spec does not name)", debuggerName(o.Runtime))
	case !o.nonRoot():
		return Baseline, "restricted requires runAsNonRoot, and the debugger runs as the target's user, " +
			"which is root or not named by the pod spec (runAsUser)"
	}
	return Restricted, ""
}

// CheckPodSecurity says, before any API call, that the agent's container
// would break the PodSecurity level the namespace enforces, naming the
// rule and the way out.
func CheckPodSecurity(ns *corev1.Namespace, o Options) error {
	level := PodSecurityLevel(ns)
	admits, rule := Admits(o)
	if levelRank[level] <= levelRank[admits] {
		return nil
	}
	return fmt.Errorf("namespace %q enforces PodSecurity %q, which the %s debugger container cannot pass: %s. "+
		"Set a non-root runAsUser (and runAsGroup) in the pod's or the container's securityContext, the user the process runs as: "+
		"kdap then runs the debugger as that user with no capability, which restricted allows; "+
		"or ask a cluster admin to label the namespace pod-security.kubernetes.io/enforce=%s while you debug",
		ns.Name, level, debuggerName(o.Runtime), rule, admits)
}

// debuggerName names the runtime's debugger for messages.
func debuggerName(runtime string) string {
	if rt := runtimes.Lookup(runtime); rt != nil {
		return fmt.Sprintf("%s (%s)", rt.Title, rt.Debugger)
	}
	return runtime
}

// Live is a Running agent of a pod, as its spec and status record it.
type Live struct {
	Name, Target, Runtime, Image string
	Since                        time.Time // when it started running
	InjectedBy                   string    // "" when an older kdap added it
}

// LiveAgents lists the Running kdap agents of pod, newest first.
func LiveAgents(pod *corev1.Pod) []Live {
	since := map[string]time.Time{}
	for _, st := range pod.Status.EphemeralContainerStatuses {
		if st.State.Running != nil {
			since[st.Name] = st.State.Running.StartedAt.Time
		}
	}
	var live []Live
	for _, ec := range pod.Spec.EphemeralContainers {
		started, ok := since[ec.Name]
		if !strings.HasPrefix(ec.Name, NamePrefix) || !ok {
			continue
		}
		a := Live{Name: ec.Name, Target: ec.TargetContainerName, Image: ec.Image, Since: started}
		for _, e := range ec.Env {
			switch e.Name {
			case agentapi.EnvRuntime:
				a.Runtime = e.Value
			case EnvInjectedBy:
				a.InjectedBy = e.Value
			}
		}
		live = append(live, a)
	}
	return live
}
