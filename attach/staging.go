package attach

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kdap/kdap/dap"
)

// Modes of a session: stop (breakpoints stop the target, as in any
// debugger) and snapshot (a breakpoint captures the stack and locals and
// the target runs on).
const (
	ModeStop     = "stop"
	ModeSnapshot = "snapshot"
)

// Namespace annotations with which a platform team limits kdap there.
const (
	AnnotationMode       = "kdap.dev/mode"        // "snapshot": snapshot mode only
	AnnotationMaxStop    = "kdap.dev/max-stop"    // e.g. "10s": no stop lasts longer
	AnnotationMaxSession = "kdap.dev/max-session" // e.g. "30m": sessions end then
)

// StopLimit is the stopLimit attach argument: "auto" (the default: just
// before the kubelet would restart the container, when a probe would), a
// number of seconds, or "off".
type StopLimit string

// UnmarshalJSON takes a string or a number of seconds.
func (l *StopLimit) UnmarshalJSON(b []byte) error {
	var n float64
	if json.Unmarshal(b, &n) == nil {
		*l = StopLimit(strconv.FormatFloat(n, 'f', -1, 64))
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf(`stopLimit: use "auto", a number of seconds or "off"`)
	}
	*l = StopLimit(s)
	return nil
}

// parse returns the limit: auto, off, or a duration.
func (l StopLimit) parse() (auto, off bool, d time.Duration, err error) {
	switch s := strings.TrimSpace(string(l)); s {
	case "", "auto":
		return true, false, 0, nil
	case "off":
		return false, true, 0, nil
	default:
		if n, err := strconv.ParseFloat(s, 64); err == nil && n > 0 {
			return false, false, time.Duration(n * float64(time.Second)), nil
		}
		if d, err := time.ParseDuration(s); err == nil && d > 0 {
			return false, false, d, nil
		}
		return false, false, 0, fmt.Errorf(`stopLimit %q: use "auto", a number of seconds (e.g. 10) or "off"`, s)
	}
}

// Policy is what a namespace's annotations allow kdap there.
type Policy struct {
	SnapshotOnly bool
	MaxStop      time.Duration
	MaxSession   time.Duration
}

// ReadPolicy reads a namespace's kdap annotations; a malformed one is an
// error naming it, so that a platform team's limit is never silently lost.
func ReadPolicy(ns *corev1.Namespace) (Policy, error) {
	var p Policy
	a := ns.Annotations
	switch v := a[AnnotationMode]; v {
	case "":
	case ModeSnapshot:
		p.SnapshotOnly = true
	default:
		return p, fmt.Errorf("namespace %s: annotation %s=%q is not one kdap knows (use %q): ask its owners to fix it", ns.Name, AnnotationMode, v, ModeSnapshot)
	}
	for key, into := range map[string]*time.Duration{AnnotationMaxStop: &p.MaxStop, AnnotationMaxSession: &p.MaxSession} {
		if v := a[key]; v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return p, fmt.Errorf("namespace %s: annotation %s=%q is not a duration like \"10s\": ask its owners to fix it", ns.Name, key, v)
			}
			*into = d
		}
	}
	return p, nil
}

// namespacePolicy reads the namespace and its kdap policy. A namespace
// kdap may not read has no policy it can honour: the user is told.
func namespacePolicy(ctx context.Context, client kubernetes.Interface, ns string, r Reporter) (*corev1.Namespace, Policy, error) {
	obj, err := client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		why := err.Error()
		if apierrors.IsForbidden(err) {
			why = "RBAC: you may not get namespaces"
		}
		r.Output(fmt.Sprintf("kdap: could not read namespace %s (%s), so no %s annotations there are honoured", ns, why, "kdap.dev/"))
		return nil, Policy{}, nil
	}
	p, err := ReadPolicy(obj)
	return obj, p, err
}

// refuseRaw refuses a raw relay (kdap attach) where the namespace limits
// kdap: its stops cannot be seen, so they cannot be held to the limits.
func (p Policy) refuseRaw(ns string) error {
	var by []string
	if p.SnapshotOnly {
		by = append(by, AnnotationMode+"="+ModeSnapshot)
	}
	if p.MaxStop > 0 {
		by = append(by, AnnotationMaxStop+"="+p.MaxStop.String())
	}
	if p.MaxSession > 0 {
		by = append(by, AnnotationMaxSession+"="+p.MaxSession.String())
	}
	if len(by) == 0 {
		return nil
	}
	return fmt.Errorf("namespace %s limits debugging (annotation %s), which kdap can hold only DAP sessions to: kdap attach relays a debugger's own protocol as it is, so it is refused here; debug with a DAP client (VS Code, nvim-dap: kdap dap)", ns, strings.Join(by, ", "))
}

// stopBudget is how long the container's process may stay stopped before
// the kubelet restarts it, from its liveness probe (or its startup probe,
// while that still runs), what says so, and the stop "stopLimit": "auto"
// allows; 0 when no probe would restart it.
//
// A probe runs every period and fails after its timeout; the kubelet
// restarts the container at the failureThreshold-th failure in a row, so
// the soonest restart comes timeout + (threshold-1)·period after the stop
// began. The automatic limit lets the stop cause one failure fewer than
// that: a failure from elsewhere (Python's attach holds the target while
// gdb injects debugpy; a probe slow on a loaded node) then costs no
// restart. A tcpSocket probe passes while the process is stopped (the
// kernel accepts the connection), so it never restarts it.
func stopBudget(pod *corev1.Pod, container string) (budget, auto time.Duration, why string) {
	var spec *corev1.Container
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == container {
			spec = &pod.Spec.Containers[i]
		}
	}
	if spec == nil {
		return 0, 0, ""
	}
	probe, kind := spec.LivenessProbe, "liveness"
	for _, st := range pod.Status.ContainerStatuses {
		if st.Name == container && st.Started != nil && !*st.Started && spec.StartupProbe != nil {
			probe, kind = spec.StartupProbe, "startup"
		}
	}
	if probe == nil || probe.TCPSocket != nil {
		return 0, 0, ""
	}
	period, timeout, threshold := int32Or(probe.PeriodSeconds, 10), int32Or(probe.TimeoutSeconds, 1), int32Or(probe.FailureThreshold, 3)
	second := func(n int32) time.Duration { return time.Duration(n) * time.Second }
	budget = second(timeout + (threshold-1)*period)
	auto = budget / 2
	if threshold >= 3 {
		auto = second(timeout+(threshold-2)*period) - 500*time.Millisecond
	}
	return budget, auto, fmt.Sprintf("its %s probe: %s every %ds, %ds timeout, restart after %d failures", kind, describeProbe(probe), period, timeout, threshold)
}

func int32Or(v, def int32) int32 {
	if v > 0 {
		return v
	}
	return def
}

func describeProbe(p *corev1.Probe) string {
	switch {
	case p.HTTPGet != nil:
		return fmt.Sprintf("HTTP GET :%s%s", p.HTTPGet.Port.String(), p.HTTPGet.Path)
	case p.GRPC != nil:
		return fmt.Sprintf("gRPC :%d", p.GRPC.Port)
	case p.Exec != nil:
		return "exec " + strings.Join(p.Exec.Command, " ")
	}
	return "a probe"
}

// stagingFor builds the session's guards from the attach arguments, the
// target container's probes and the namespace's policy, with what the
// user is told before any stop. An error names what refused the request.
func stagingFor(args Args, pod *corev1.Pod, container string, policy Policy) (dap.Staging, []string, error) {
	var g dap.Staging
	var notes []string
	ns := pod.Namespace
	switch args.Mode {
	case ModeSnapshot:
		g.Snapshot, g.SnapshotBy = true, `"mode": "snapshot"`
	case "", ModeStop:
		if policy.SnapshotOnly {
			if args.Mode == ModeStop {
				return g, nil, fmt.Errorf(`namespace %s allows snapshot mode only (annotation %s=%s), which refuses stopping breakpoints: use "mode": "snapshot" (each hit captures the stack and locals and the target runs on)`, ns, AnnotationMode, ModeSnapshot)
			}
			g.Snapshot, g.SnapshotBy = true, fmt.Sprintf("namespace %s's annotation %s=%s", ns, AnnotationMode, ModeSnapshot)
		}
	default:
		return g, nil, fmt.Errorf(`mode %q: use "stop" (breakpoints stop the target) or "snapshot" (they capture the stack and locals, and the target runs on)`, args.Mode)
	}
	if g.Snapshot {
		notes = append(notes, fmt.Sprintf("kdap: snapshot mode (%s): a breakpoint captures the stopped thread's stack and locals into the console and the target runs on at once; conditions, hit counts and logpoints work as usual", g.SnapshotBy))
	}
	if policy.MaxSession > 0 {
		g.SessionLimit, g.SessionBy = policy.MaxSession, fmt.Sprintf("namespace %s's annotation %s=%s", ns, AnnotationMaxSession, policy.MaxSession)
		notes = append(notes, fmt.Sprintf("kdap: this session ends after %s (%s)", policy.MaxSession, g.SessionBy))
	}
	isAuto, off, limit, err := args.StopLimit.parse()
	if err != nil {
		return g, nil, err
	}
	var auto time.Duration
	g.StopBudget, auto, g.Budget = stopBudget(pod, container)
	switch {
	case off:
		g.Limit = `"stopLimit": "off"`
	case isAuto && g.StopBudget > 0:
		g.StopLimit, g.Limit = auto, `"stopLimit": "auto"`
	case limit > 0:
		g.StopLimit, g.Limit = limit, fmt.Sprintf(`"stopLimit": %s`, strconv.Quote(string(args.StopLimit)))
	}
	if policy.MaxStop > 0 && (g.StopLimit == 0 || g.StopLimit > policy.MaxStop) {
		by := fmt.Sprintf("namespace %s's annotation %s=%s", ns, AnnotationMaxStop, policy.MaxStop)
		if off || g.StopLimit > 0 {
			notes = append(notes, fmt.Sprintf("kdap: %s is refused by %s: no stop lasts longer than %s", g.Limit, by, policy.MaxStop))
		}
		g.StopLimit, g.Limit = policy.MaxStop, by
	}
	if g.Snapshot {
		return g, notes, nil
	}
	switch {
	case g.StopBudget > 0 && g.StopLimit > 0 && g.StopLimit < g.StopBudget:
		notes = append(notes, fmt.Sprintf("kdap: a stop at a breakpoint may last about %s before the kubelet restarts container %s (%s); kdap resumes the target after %s stopped (%s)", g.StopBudget, container, g.Budget, g.StopLimit, g.Limit))
	case g.StopBudget > 0:
		notes = append(notes, fmt.Sprintf("kdap: warning: a stop at a breakpoint may last only about %s before the kubelet restarts container %s (%s), and %s lets it: continue in time, or leave \"stopLimit\" at \"auto\"", g.StopBudget, container, g.Budget, g.Limit))
	case g.StopLimit > 0:
		notes = append(notes, fmt.Sprintf("kdap: no probe restarts container %s while it is stopped; kdap resumes the target after %s stopped (%s)", container, g.StopLimit, g.Limit))
	default:
		notes = append(notes, fmt.Sprintf("kdap: no probe restarts container %s while it is stopped; a stop still holds every request the pod serves", container))
	}
	return g, notes, nil
}

// restarts is the container's restart count in the pod's status.
func restarts(pod *corev1.Pod, container string) int32 {
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == container {
			return cs.RestartCount
		}
	}
	return 0
}
