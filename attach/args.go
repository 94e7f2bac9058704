// Package attach is kdap's orchestration: from the IDE's attach arguments
// it resolves the target pod and container, injects (or reuses) the agent,
// forwards its port and connects to the debugger. It implements
// dap.Attacher for `kdap dap` and Prepare for `kdap attach`.
package attach

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/kdap/kdap/runtimes"
)

// Args are the attach arguments kdap reads; everything else in the launch
// configuration goes to the debugger untouched. The README documents them
// and the VS Code extension's schema mirrors them.
// A runtime's explicit path-mapping arguments (runtimes.Runtime.MappingArgs)
// are its debugger's own and are read by that runtime.
type Args struct {
	Target     string `json:"target"`    // pod/NAME, deployment/NAME, statefulset/NAME, selector/LABELS or NAME
	Namespace  string `json:"namespace"` // default: the kubeconfig context's
	Container  string `json:"container"` // default: the pod's default-container annotation, else its only container
	Context    string `json:"context"`   // kubeconfig context
	Kubeconfig string `json:"kubeconfig"`
	Runtime    string `json:"runtime"`   // auto or a runtime's name
	LocalRoot  string `json:"localRoot"` // the IDE's source folder
	Image      string `json:"image"`     // debugger image override
	AgentTTL   string `json:"agentTTL"`  // e.g. 15m
	// Process picks the target container's processes to debug: "" (the
	// workers when a master runs some, else the main process), "all", a
	// pid, or a part of the command line. Several become child sessions.
	Process string `json:"process"`
	// Replicas "all" debugs every Running pod of a deployment, statefulset
	// or label selector as a child session; "" debugs the newest.
	Replicas string `json:"replicas"`
	// NewReplicas, with replicas "all", attaches pods that start during
	// the session too.
	NewReplicas bool `json:"newReplicas"`
	// Mode is "stop" (breakpoints stop the target) or "snapshot" (each hit
	// captures the stack and locals, and the target runs on); "" is stop,
	// or snapshot where the namespace allows nothing else.
	Mode string `json:"mode"`
	// StopLimit resumes a stopped target: "auto" (default: just before its
	// liveness probe would have the kubelet restart it), seconds, or "off".
	StopLimit StopLimit `json:"stopLimit"`
	// Token is the per-run token a `kdap dap --token-file` asks of every
	// attach.
	Token string `json:"token"`
}

// ParseArgs decodes and checks attach arguments.
func ParseArgs(raw json.RawMessage) (Args, error) {
	var a Args
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &a); err != nil {
			return a, fmt.Errorf("attach arguments: %w", err)
		}
	}
	if strings.TrimSpace(a.Target) == "" {
		return a, fmt.Errorf(`set "target" in the launch configuration: pod/NAME, deployment/NAME or a pod name`)
	}
	if a.Runtime != "" && a.Runtime != "auto" && runtimes.Lookup(a.Runtime) == nil {
		return a, fmt.Errorf(`runtime %q is not one kdap debugs: use "auto" or one of %s`, a.Runtime, strings.Join(runtimes.Names(), ", "))
	}
	if a.Replicas != "" && a.Replicas != "all" {
		return a, fmt.Errorf(`replicas %q: use "all" (every Running pod, a child session each) or leave it out (the newest pod)`, a.Replicas)
	}
	if a.Mode != "" && a.Mode != ModeStop && a.Mode != ModeSnapshot {
		return a, fmt.Errorf(`mode %q: use "stop" (breakpoints stop the target) or "snapshot" (they capture the stack and locals, and the target runs on)`, a.Mode)
	}
	if _, _, _, err := a.StopLimit.parse(); err != nil {
		return a, err
	}
	if a.AgentTTL != "" {
		if _, err := time.ParseDuration(a.AgentTTL); err != nil {
			return a, fmt.Errorf(`agentTTL %q is not a duration like "15m": %w`, a.AgentTTL, err)
		}
	}
	return a, nil
}

// TargetKind is the kind of object a target names: pod, deployment,
// statefulset or selector.
func TargetKind(target string) (string, error) {
	kind, _, err := targetRef(target)
	return kind, err
}

// targetRef splits "kind/name"; a bare name is a pod.
func targetRef(target string) (kind, name string, err error) {
	kind, name, ok := strings.Cut(target, "/")
	if !ok {
		return "pod", target, nil
	}
	switch strings.ToLower(kind) {
	case "pod", "pods", "po":
		return "pod", name, nil
	case "deployment", "deployments", "deploy":
		return "deployment", name, nil
	case "statefulset", "statefulsets", "sts":
		return "statefulset", name, nil
	case "selector", "label", "l":
		return "selector", name, nil
	}
	return "", "", fmt.Errorf("target %q: kind %q is not supported; use pod/NAME, deployment/NAME, statefulset/NAME or selector/LABEL=VALUE", target, kind)
}
