package dap

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	godap "github.com/google/go-dap"
)

// Staging is how a session keeps a target that serves other people safe:
// how long a stop may hold it, whether breakpoints hold it at all, and how
// long the session may last. The zero value guards nothing.
type Staging struct {
	// StopBudget is how long a stop may last before the kubelet restarts
	// the container (0: no probe restarts it); Budget says why, e.g.
	// "the liveness probe (HTTP GET :8080/healthz, every 2s, 3 failures)".
	StopBudget time.Duration
	Budget     string
	// StopLimit, if set, resumes the target once a stop has lasted this
	// long; Limit says what set it ("stopLimit auto").
	StopLimit time.Duration
	Limit     string
	// Snapshot makes every breakpoint non-stopping: each hit is captured
	// (stack, locals) and the target resumed at once. SnapshotBy says what
	// asked for it, for the refusal of pause.
	Snapshot   bool
	SnapshotBy string
	// SessionLimit, if set, ends the session after this long; SessionBy
	// says what set it.
	SessionLimit time.Duration
	SessionBy    string
	// Ended, if set, is called once when an attached session ends.
	Ended func(Summary)
}

// Summary is what a session did, for the audit trail.
type Summary struct {
	Duration  time.Duration
	Stops     int           // times the target was stopped (not counting snapshots)
	Longest   time.Duration // the longest stop
	Resumed   int           // stops kdap ended at the stop limit
	Snapshots int           // snapshot captures
	Reason    string        // why it ended, if kdap ended it
}

// Snapshot bounds: a capture holds the target for a few round trips to
// the debugger, and keeps what the IDE may expand later.
const (
	snapshotFrames      = 20  // frames listed
	snapshotFrameLocals = 1   // frames whose scopes are read (each read costs the target a round trip)
	snapshotDepth       = 2   // levels of structure below a scope
	snapshotVariables   = 40  // variables kept per scope or value
	snapshotRequests    = 60  // variables requests per capture
	snapshotValueBytes  = 512 // a value's text
	snapshotRefBase     = 1 << 30
)

// stopClock tracks the current stop of a stop-mode session.
type stopClock struct {
	since  time.Time // zero while running
	thread int
	warn   *time.Timer
	limit  *time.Timer
}

func (c *stopClock) stopTimers() {
	for _, t := range []*time.Timer{c.warn, c.limit} {
		if t != nil {
			t.Stop()
		}
	}
	c.warn, c.limit = nil, nil
}

func timerC(t *time.Timer) <-chan time.Time {
	if t == nil {
		return nil
	}
	return t.C
}

// onStopped starts the stop clock at a stopped event in stop mode.
func (s *session) onStopped(thread int) {
	if !s.stop.since.IsZero() {
		return // a step, or another thread: the same stop for the service
	}
	s.stop.since, s.stop.thread = time.Now(), thread
	s.summary.Stops++
	g := s.staging
	deadline := g.StopBudget
	if g.StopLimit > 0 && (deadline == 0 || g.StopLimit < deadline) {
		deadline = g.StopLimit
	}
	if deadline > 0 {
		s.stop.warn = time.NewTimer(warnAt(deadline))
	}
	if g.StopLimit > 0 {
		s.stop.limit = time.NewTimer(g.StopLimit)
	}
}

// warnAt is when, into a stop, the user is warned of its deadline.
func warnAt(deadline time.Duration) time.Duration {
	if deadline > 6*time.Second {
		return deadline - 3*time.Second
	}
	return deadline / 2
}

// onRunning ends the stop clock: the target runs again.
func (s *session) onRunning() {
	if s.stop.since.IsZero() {
		return
	}
	if d := time.Since(s.stop.since); d > s.summary.Longest {
		s.summary.Longest = d
	}
	s.stop.since = time.Time{}
	s.stop.stopTimers()
}

// warnStop tells the user, prominently, that the stop nears its deadline.
func (s *session) warnStop() {
	s.stop.warn = nil
	if s.stop.since.IsZero() {
		return
	}
	held := time.Since(s.stop.since).Round(100 * time.Millisecond)
	g := s.staging
	var msg string
	switch {
	case g.StopLimit > 0 && (g.StopBudget == 0 || g.StopLimit < g.StopBudget):
		msg = fmt.Sprintf("kdap: the target has been stopped %s; kdap resumes it at %s (%s)", held, g.StopLimit, g.Limit)
		if g.StopBudget > 0 {
			msg += fmt.Sprintf(", before the kubelet would restart it at about %s (%s)", g.StopBudget, g.Budget)
		}
	default:
		msg = fmt.Sprintf("kdap: the target has been stopped %s: the kubelet restarts the container after about %s stopped (%s); continue now to keep it", held, g.StopBudget, g.Budget)
	}
	s.important(msg + "\n")
}

// limitStop resumes the target at the stop limit and tells the IDE.
func (s *session) limitStop() {
	s.stop.limit = nil
	if s.stop.since.IsZero() || s.debugger == nil {
		return
	}
	held := time.Since(s.stop.since)
	thread := s.stop.thread
	s.onRunning()
	dseq, err := s.debugger.Request("continue", godap.ContinueArguments{ThreadId: thread})
	if err != nil {
		return
	}
	s.internal[dseq] = func(resp *Message) {
		if !resp.Success {
			s.important(fmt.Sprintf("kdap: the stop limit (%s, %s) could not resume the target: %s; continue it yourself\n", s.staging.StopLimit, s.staging.Limit, resp.ErrorText()))
			return
		}
		s.summary.Resumed++
		send(s.client, &godap.ContinuedEvent{Event: event("continued"), Body: godap.ContinuedEventBody{ThreadId: thread, AllThreadsContinued: true}})
		msg := fmt.Sprintf("kdap: resumed the target after %s stopped (%s)", held.Round(100*time.Millisecond), s.staging.Limit)
		if s.staging.StopBudget > 0 {
			msg += fmt.Sprintf(", before the kubelet would restart it (%s)", s.staging.Budget)
		}
		if strings.HasPrefix(s.staging.Limit, `"stopLimit"`) { // not a namespace's limit, which the user cannot lift
			msg += `; set "stopLimit": "off" to stay stopped`
		}
		s.important(msg + "\n")
	}
}

// endSessionAtLimit ends a session that reached its maximum length: the
// debugger detaches (the target runs on) and the IDE is told.
func (s *session) endSessionAtLimit() {
	s.sessionTimer = nil
	if s.state != attached || s.debugger == nil {
		return
	}
	s.summary.Reason = fmt.Sprintf("the maximum session length %s (%s)", s.staging.SessionLimit, s.staging.SessionBy)
	s.disconnecting = true
	dseq, err := s.debugger.Request("disconnect", godap.DisconnectArguments{TerminateDebuggee: false})
	if err != nil {
		s.finished = true
		return
	}
	s.internal[dseq] = func(resp *Message) {
		what := "the debugger detached, so the target runs on"
		if !resp.Success {
			what = "the debugger's disconnect failed (" + resp.ErrorText() + "); kdap closes its connection, which releases the target"
		}
		s.important(fmt.Sprintf("kdap: this session has ended at %s: %s\n", s.summary.Reason, what))
		send(s.client, &godap.TerminatedEvent{Event: event("terminated")})
		s.finished = true
	}
}

// important is an output event the IDE shows prominently (a notification
// in VS Code), also written to its console.
func (s *session) important(text string) {
	s.output("important", text)
	s.output("console", text)
}

// filterCapabilities hides the debugger's terminate capabilities unless
// the user allowed terminating the target.
func (s *session) filterCapabilities(caps *godap.Capabilities) {
	if !s.opts.AllowTerminate {
		caps.SupportsTerminateRequest = false
		caps.SupportTerminateDebuggee = false
	}
}

// capabilitiesEvent is a capabilities event of the debugger, filtered.
func (s *session) capabilitiesEvent(m *Message) *godap.CapabilitiesEvent {
	var body godap.CapabilitiesEventBody
	json.Unmarshal(m.Body(), &body)
	s.filterCapabilities(&body.Capabilities)
	return &godap.CapabilitiesEvent{Event: event("capabilities"), Body: body}
}

// snapshotNode is one captured value: a frame, a scope or a variable.
type snapshotNode struct {
	name, value, typ string
	children         []*snapshotNode
	ref              int // kdap's reference, once the IDE may expand it
}

// capture is one snapshot under way: the target is stopped until it ends.
type capture struct {
	thread  int
	at      time.Time
	root    *snapshotNode
	pending int // requests not yet answered
	budget  int // variables requests left
	where   string
	key     string
}

// takeSnapshot captures the stopped thread's stack with its locals, then
// resumes the target; the IDE gets an output event it can expand.
func (s *session) takeSnapshot(thread int, reason string) {
	c := &capture{thread: thread, at: time.Now(), root: &snapshotNode{}, budget: snapshotRequests}
	if reason != "breakpoint" && reason != "function breakpoint" && reason != "exception" && reason != "data breakpoint" {
		s.resume(c, false) // a stop no breakpoint made (entry, pause, step): nothing to capture
		return
	}
	s.request(c, "stackTrace", godap.StackTraceArguments{ThreadId: thread, Levels: snapshotFrames}, func(resp *Message) {
		var body godap.StackTraceResponseBody
		json.Unmarshal(resp.Body(), &body)
		for i, f := range body.StackFrames {
			loc := f.Name
			if f.Source != nil {
				loc = fmt.Sprintf("%s (%s:%d)", f.Name, f.Source.Path, f.Line)
			}
			frame := &snapshotNode{name: fmt.Sprintf("#%d", i), value: loc}
			c.root.children = append(c.root.children, frame)
			if i == 0 {
				c.where = loc
				c.key = loc
				if f.Source != nil {
					c.where = fmt.Sprintf("%s:%d in %s", f.Source.Path, f.Line, f.Name)
					c.key = fmt.Sprintf("%s:%d", f.Source.Path, f.Line)
				}
			}
			if i < snapshotFrameLocals {
				s.captureScopes(c, frame, f.Id)
			}
		}
	})
}

func (s *session) captureScopes(c *capture, frame *snapshotNode, frameID int) {
	s.request(c, "scopes", godap.ScopesArguments{FrameId: frameID}, func(resp *Message) {
		var body godap.ScopesResponseBody
		json.Unmarshal(resp.Body(), &body)
		for _, sc := range body.Scopes {
			if sc.Expensive || sc.VariablesReference == 0 || strings.HasPrefix(strings.ToLower(sc.Name), "global") {
				continue // a snapshot is of the frame's own state (debugpy sends Globals as cheap)
			}
			n := &snapshotNode{name: sc.Name}
			frame.children = append(frame.children, n)
			s.captureVariables(c, n, sc.VariablesReference, 0)
		}
	})
}

func (s *session) captureVariables(c *capture, into *snapshotNode, ref, depth int) {
	if c.budget == 0 {
		into.value = "(not captured: the snapshot's size limit)"
		return
	}
	c.budget--
	s.request(c, "variables", godap.VariablesArguments{VariablesReference: ref, Count: snapshotVariables}, func(resp *Message) {
		var body godap.VariablesResponseBody
		json.Unmarshal(resp.Body(), &body)
		kept := body.Variables[:0]
		for _, v := range body.Variables {
			if !debuggerGroups[v.Name] {
				kept = append(kept, v)
			}
		}
		for i, v := range kept {
			if i == snapshotVariables {
				into.children = append(into.children, &snapshotNode{name: "…", value: fmt.Sprintf("%d more not captured", len(kept)-i)})
				break
			}
			n := &snapshotNode{name: v.Name, value: truncateValue(v.Value), typ: v.Type}
			into.children = append(into.children, n)
			if v.VariablesReference > 0 && depth+1 < snapshotDepth {
				s.captureVariables(c, n, v.VariablesReference, depth+1)
			}
		}
	})
}

// debuggerGroups are the entries debugpy groups dunder, function and class
// members under: the snapshot leaves them out.
var debuggerGroups = map[string]bool{"special variables": true, "function variables": true, "class variables": true, "protected variables": true}

func truncateValue(v string) string {
	if len(v) <= snapshotValueBytes {
		return v
	}
	return v[:snapshotValueBytes] + "…"
}

// request sends one request of a capture; the capture ends when the last
// answer has come.
func (s *session) request(c *capture, command string, args any, then func(*Message)) {
	dseq, err := s.debugger.Request(command, args)
	if err != nil {
		return
	}
	c.pending++
	s.internal[dseq] = func(resp *Message) {
		c.pending--
		if resp.Success {
			then(resp)
		}
		if c.pending == 0 {
			s.resume(c, true)
		}
	}
}

// resume continues the target after a capture and shows the capture.
func (s *session) resume(c *capture, show bool) {
	dseq, err := s.debugger.Request("continue", godap.ContinueArguments{ThreadId: c.thread})
	if err != nil {
		return
	}
	s.internal[dseq] = func(resp *Message) {
		held := time.Since(c.at)
		if !resp.Success {
			s.important(fmt.Sprintf("kdap: could not resume the target after a snapshot: %s; continue it yourself\n", resp.ErrorText()))
			return
		}
		if !show {
			return
		}
		s.summary.Snapshots++
		s.snapshotHits[c.key]++
		ref := s.keep(c.root)
		text := fmt.Sprintf("kdap snapshot %d (hit %d here) at %s; the target was held %s\n",
			s.summary.Snapshots, s.snapshotHits[c.key], c.where, held.Round(10*time.Microsecond))
		send(s.client, &godap.OutputEvent{Event: event("output"), Body: godap.OutputEventBody{Category: "console", Output: text, VariablesReference: ref}})
	}
}

// keep gives n and its descendants kdap's own variables references, which
// the IDE expands after the debugger's have gone.
func (s *session) keep(n *snapshotNode) int {
	if len(n.children) == 0 {
		return 0
	}
	s.nextRef++
	n.ref = snapshotRefBase + s.nextRef
	s.snapshots[n.ref] = n
	for _, c := range n.children {
		s.keep(c)
	}
	return n.ref
}

// snapshotVariablesResponse answers the IDE's variables request for a
// snapshot's reference; ok is false for the debugger's own references.
func (s *session) snapshotVariablesResponse(m *Message) (resp any, ok bool) {
	var args godap.VariablesArguments
	json.Unmarshal(m.Arguments(), &args)
	n, ok := s.snapshots[args.VariablesReference]
	if !ok {
		return nil, false
	}
	vars := make([]godap.Variable, 0, len(n.children))
	for _, c := range n.children {
		vars = append(vars, godap.Variable{Name: c.name, Value: c.value, Type: c.typ, VariablesReference: c.ref})
	}
	return &godap.VariablesResponse{Response: response(m), Body: godap.VariablesResponseBody{Variables: vars}}, true
}
