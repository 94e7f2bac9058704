package attach

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/kdap/kdap/audit"
	"github.com/kdap/kdap/dap"
	"github.com/kdap/kdap/runtimes"
)

// PodRef is the endpoint's pod, as an Event's involved object.
func (ep *Endpoint) PodRef() *corev1.ObjectReference {
	return &corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: ep.Namespace, Name: ep.Pod, UID: ep.PodUID}
}

// auditSession leaves the start of a debug session as an Event on the pod
// and a line in the local log, and returns what records its end there.
// Without RBAC to create events the user is told once, at the start.
func auditSession(ctx context.Context, ep *Endpoint, t *runtimes.Target, g dap.Staging, r Reporter) func(dap.Summary) {
	mode := ModeStop
	if g.Snapshot {
		mode = ModeSnapshot
	}
	start := audit.Record{Time: time.Now(), Reason: audit.ReasonSession, Action: "debug session started", Namespace: ep.Namespace,
		Pod: ep.Pod, Container: ep.Container, Runtime: t.Runtime, PID: t.PID, Who: ep.Who, Mode: mode}
	if g.StopLimit > 0 {
		start.Detail = fmt.Sprintf("stop limit %s (%s)", g.StopLimit, g.Limit)
	}
	events := true
	if err := audit.Event(ctx, ep.Client, ep.PodRef(), start); err != nil {
		events = false
		r.Output(fmt.Sprintf("kdap: this session leaves no Event on pod %s/%s (%v): grant create on events in namespace %s to keep the team's record; it is logged on this machine only, in %s",
			ep.Namespace, ep.Pod, err, ep.Namespace, audit.LogFile()))
	}
	if err := audit.Log(start); err != nil {
		r.Output(fmt.Sprintf("kdap: could not write the local session log %s: %v", audit.LogFile(), err))
	}
	return func(s dap.Summary) {
		end := start
		end.Time, end.Action, end.Duration, end.Stops = time.Now(), "debug session ended", s.Duration, s.Stops
		end.Detail = summaryDetail(s)
		if events {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			audit.Event(ctx, ep.Client, ep.PodRef(), end) // a failure has no one left to tell
		}
		audit.Log(end)
	}
}

// summaryDetail is what a session did, in words, for its end's record.
func summaryDetail(s dap.Summary) string {
	var parts []string
	if s.Stops > 0 {
		parts = append(parts, fmt.Sprintf("longest stop %s", s.Longest.Round(time.Millisecond)))
	}
	if s.Resumed > 0 {
		parts = append(parts, fmt.Sprintf("%d resumed at the stop limit", s.Resumed))
	}
	if s.Snapshots > 0 {
		parts = append(parts, fmt.Sprintf("%d snapshots", s.Snapshots))
	}
	if s.Reason != "" {
		parts = append(parts, "ended at "+s.Reason)
	}
	return strings.Join(parts, ", ")
}
