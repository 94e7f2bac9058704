// Package audit records what kdap did to a pod where the team can see it
// — a Kubernetes Event on the pod, with who did it (the identity the API
// server knows, from a SelfSubjectReview) — and on the user's machine, a
// line in kdap's local log.
package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kdap/kdap/internal/statedir"
)

// Reasons of kdap's Events on pods.
const (
	Reason        = "KdapDiagnostic"   // a diagnostic taken
	ReasonSession = "KdapDebugSession" // a debug session started or ended
)

// Record is one thing kdap did to a pod.
type Record struct {
	Time      time.Time     `json:"time"`
	Action    string        `json:"action"` // "goroutine dump"
	Namespace string        `json:"namespace"`
	Pod       string        `json:"pod"`
	Container string        `json:"container"`
	Runtime   string        `json:"runtime"`
	PID       int           `json:"pid"`
	Who       string        `json:"who"`
	Pause     time.Duration `json:"pauseNs,omitempty"` // how long the target was stopped
	Bytes     int64         `json:"bytes,omitempty"`
	File      string        `json:"file,omitempty"`   // where it went on this machine
	Reason    string        `json:"reason,omitempty"` // the Event's reason; default Reason
	// A debug session's: its mode ("stop", "snapshot"), how long it
	// lasted and how many stops it made, and the rest in words.
	Mode     string        `json:"mode,omitempty"`
	Duration time.Duration `json:"durationNs,omitempty"`
	Stops    int           `json:"stops,omitempty"`
	Detail   string        `json:"detail,omitempty"`
}

// Message is the record as an Event's message.
func (r Record) Message() string {
	msg := fmt.Sprintf("kdap: %s of pid %d (%s, container %s) by %s", r.Action, r.PID, r.Runtime, r.Container, r.Who)
	if r.Pause > 0 {
		msg += fmt.Sprintf("; the target was stopped %s", r.Pause.Round(time.Microsecond))
	}
	if r.Bytes > 0 {
		msg += fmt.Sprintf("; %d bytes", r.Bytes)
	}
	if r.Mode != "" {
		msg += "; mode " + r.Mode
	}
	if r.Duration > 0 {
		msg += fmt.Sprintf("; lasted %s, %d stops", r.Duration.Round(100*time.Millisecond), r.Stops)
	}
	if r.Detail != "" {
		msg += "; " + r.Detail
	}
	return msg
}

func (r Record) reason() string {
	if r.Reason != "" {
		return r.Reason
	}
	return Reason
}

// Who is the user the API server sees kdap as, or "unknown" if it would
// not say (SelfSubjectReview needs Kubernetes 1.28).
func Who(ctx context.Context, client kubernetes.Interface) string {
	r, err := client.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil || r.Status.UserInfo.Username == "" {
		return "unknown"
	}
	return r.Status.UserInfo.Username
}

// Event creates a Normal Event on the record's pod; an error says why it
// could not (typically RBAC: create events).
func Event(ctx context.Context, client kubernetes.Interface, pod *corev1.ObjectReference, r Record) error {
	now := metav1.NewTime(r.Time)
	ev := &corev1.Event{
		ObjectMeta:          metav1.ObjectMeta{GenerateName: r.Pod + ".kdap-", Namespace: r.Namespace},
		InvolvedObject:      *pod,
		Reason:              r.reason(),
		Message:             r.Message(),
		Type:                corev1.EventTypeNormal,
		Source:              corev1.EventSource{Component: "kdap"},
		FirstTimestamp:      now,
		LastTimestamp:       now,
		Count:               1,
		ReportingController: "kdap.dev/kdap",
		ReportingInstance:   r.Who,
		Action:              r.Action,
	}
	_, err := client.CoreV1().Events(r.Namespace).Create(ctx, ev, metav1.CreateOptions{})
	return err
}

// LogFile is kdap's local log: $XDG_STATE_HOME/kdap/kdap.log, by default
// ~/.local/state/kdap/kdap.log.
func LogFile() string { return filepath.Join(statedir.Dir(), "kdap.log") }

// Log appends the record to the local log as one JSON line.
func Log(r Record) error {
	file := LogFile()
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(file, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	line, _ := json.Marshal(r)
	_, err = f.Write(append(line, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
