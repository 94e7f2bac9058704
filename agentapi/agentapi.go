// Package agentapi is the contract between kdap and its in-pod agent: the
// environment the agent is configured by, its default port, and the status
// document it serves. It has no dependencies, so both sides import it.
package agentapi

import (
	"fmt"
	"regexp"
	"time"

	"github.com/kdap/kdap/runtimes"
)

// Environment variables that configure the agent. kdap sets them in the
// ephemeral container's spec and reads them back to reuse a running agent.
const (
	EnvListen  = "KDAP_AGENT_LISTEN"  // 127.0.0.1:PORT
	EnvRuntime = "KDAP_AGENT_RUNTIME" // a runtime's name, or auto
	EnvTTL     = "KDAP_AGENT_TTL"     // idle time before the agent exits, e.g. 15m0s
	// EnvLazy "true": attach no debugger until a session asks for one (an
	// agent injected for a diagnostic), instead of at once.
	EnvLazy = "KDAP_AGENT_LAZY"
	// EnvContainerID is the target container's ID from the pod's status
	// ("containerd://…"): the agent debugs only processes whose cgroup
	// names it, never another container's in a shared PID namespace.
	EnvContainerID = "KDAP_AGENT_CONTAINER_ID"
)

// A debugger image configures its runtime's driver in the agent with
// settings of its own (runtimes declares them, e.g. runtimes.DebugpyDirEnv).

// DefaultPort is the agent's loopback port unless another agent in the pod
// uses it.
const DefaultPort = 47474

// Status is the JSON document the agent serves to `GET /`.
type Status struct {
	Target   *runtimes.Target `json:"target"`
	Listen   string           `json:"listen"`
	TTL      string           `json:"ttl"`
	Sessions int              `json:"sessions"` // clients connected to the debugger now
	Debugger string           `json:"debugger"` // "running", "not started" or "unavailable"
	// Unavailable says why debugger sessions are refused (e.g. a JVM
	// started without JDWP), while diagnostics may still work.
	Unavailable string `json:"unavailable,omitempty"`
	// Processes are the target container's processes, read anew for each
	// status request (workers come and go); Target is the first of those
	// debugged by default.
	Processes []Process `json:"processes,omitempty"`
	// ProcessesExact says the container's ID told its processes apart
	// from other containers' (false: an agent without the ID, or a runtime
	// whose cgroups do not name it; then it took every process but pause).
	ProcessesExact bool `json:"processesExact,omitempty"`
}

// Process is one process of the target container.
type Process struct {
	PID     int    `json:"pid"`
	PPID    int    `json:"ppid"`
	Command string `json:"command"` // its command line
	// Role is "main" (a process of the runtime whose parent is not one),
	// "worker" (one started by another: gunicorn's, a Node.js cluster's),
	// "exec" (entered into the container later: an exec probe, a kubectl
	// exec; not debugged) or "other" (a shell, an init, a helper: not
	// debugged).
	Role string `json:"role"`
	// Default says kdap debugs it unless "process" says otherwise: the
	// workers when there are any, else the main processes.
	Default  bool `json:"default,omitempty"`
	Sessions int  `json:"sessions,omitempty"` // debugger sessions on it now
}

// Debuggable says the process runs the runtime's program.
func (p Process) Debuggable() bool { return p.Role == "main" || p.Role == "worker" }

// ProcessPreamble, followed by a pid and a newline, may start a
// connection to the agent: the session that follows is on that process
// of the target container rather than on the status document's target.
const ProcessPreamble = "KDAP-PROCESS "

// ProcessLine is the preamble that picks pid.
func ProcessLine(pid int) string { return fmt.Sprintf("%s%d\n", ProcessPreamble, pid) }

// Heartbeats. A client that stays connected but goes silent — kdap stopped
// or frozen, a path that keeps the connection and carries nothing — would
// keep a paused target paused, as no debugger notices. So kdap sends each
// session a heartbeat at least every HeartbeatInterval — DAP: a request
// with command HeartbeatCommand; JDWP: jdwp.Heartbeat — which the agent
// drops; once a session has sent one, the agent ends it when SilenceLimit
// passes without a message, and the target runs on.
const (
	HeartbeatCommand  = "kdap/heartbeat"
	HeartbeatInterval = 300 * time.Millisecond
	SilenceLimit      = 1500 * time.Millisecond
)

// Diagnostics the agent serves at GET DiagnosticsPath+KIND (threads, heap,
// recording, core), for runtimes whose driver takes them; the response
// body is the file, its Content-Type says which and Content-Disposition
// suggests a file name. PauseHeader, when present, says how long the
// target was stopped for it (a Go duration).
const (
	DiagnosticsPath = "/diagnostics/"
	PauseHeader     = "Kdap-Pause"
)

// WrongRuntime is the agent's error for a target of another runtime than
// the one it was started for: the agent exits with it, and kdap reads it
// back from the debugger container's termination message
// (ParseWrongRuntime) to add the right debugger instead.
func WrongRuntime(pid int, exe string, actual, asked *runtimes.Runtime) string {
	return fmt.Sprintf("target process %d (%s) is a %s program, not %s: set \"runtime\": %q in the launch configuration",
		pid, exe, actual.Title, asked.Title, actual.Name)
}

var wrongRuntime = regexp.MustCompile(`target process \d+ \(.*\) is a .+ program, not .+: set "runtime": "([a-z]+)" in the launch configuration`)

// ParseWrongRuntime returns the runtime a termination message of the
// agent names as the target's, with the agent's sentence.
func ParseWrongRuntime(message string) (rt *runtimes.Runtime, said string) {
	m := wrongRuntime.FindStringSubmatch(message)
	if m == nil {
		return nil, ""
	}
	return runtimes.Lookup(m[1]), m[0]
}
