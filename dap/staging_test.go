package dap_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	godap "github.com/google/go-dap"

	"github.com/kdap/kdap/dap"
	"github.com/kdap/kdap/dap/daptest"
)

// attached runs initialize and attach to the end.
func attached(t *testing.T, c *daptest.Client) {
	t.Helper()
	seq := attach(t, c, false)
	c.ExpectResponse(t, seq)
}

// outputs is a match for an output event whose text contains want.
func outputs(category, want string) func(*dap.Message) bool {
	return func(m *dap.Message) bool {
		if m.Type != "event" || m.Event != "output" {
			return false
		}
		var body godap.OutputEventBody
		if err := json.Unmarshal(m.Body(), &body); err != nil {
			return false
		}
		return (category == "" || body.Category == category) && strings.Contains(body.Output, want)
	}
}

func TestLaterCapabilitiesEventsAreFilteredLikeInitialize(t *testing.T) {
	a := &attacher{}
	c, _ := startSession(t, a, dap.Options{})
	attached(t, c)
	a.debugger.send(map[string]any{"type": "event", "event": "capabilities", "body": map[string]any{"capabilities": map[string]any{
		"supportTerminateDebuggee": true, "supportsTerminateRequest": true, "supportsLogPoints": true}}})
	ev := c.ExpectEvent(t, "capabilities")
	var body godap.CapabilitiesEventBody
	daptest.Decode(t, ev, &body)
	if body.Capabilities.SupportTerminateDebuggee || body.Capabilities.SupportsTerminateRequest {
		t.Errorf("a later capabilities event re-advertised terminate: %s", ev.Raw)
	}
	if !body.Capabilities.SupportsLogPoints {
		t.Errorf("the filter dropped a capability it should keep: %s", ev.Raw)
	}
}

func TestStopLimitResumesTheTargetAndSaysSo(t *testing.T) {
	a := &attacher{staging: dap.Staging{StopBudget: 2 * time.Second, Budget: "its liveness probe", StopLimit: 400 * time.Millisecond, Limit: `"stopLimit": 0.4`}}
	c, _ := startSession(t, a, dap.Options{})
	attached(t, c)
	a.debugger.send(map[string]any{"type": "event", "event": "stopped", "body": map[string]any{"reason": "breakpoint", "threadId": 7, "allThreadsStopped": true}})
	c.ExpectEvent(t, "stopped")
	c.Expect(t, "the warning", outputs("important", "kdap resumes it at 400ms"))
	cont := a.debugger.expect(t, "kdap's continue", func(m *dap.Message) bool { return m.Command == "continue" })
	if !strings.Contains(string(cont.Arguments()), `"threadId":7`) {
		t.Errorf("continue arguments = %s, want the stopped thread", cont.Arguments())
	}
	ev := c.ExpectEvent(t, "continued")
	var body godap.ContinuedEventBody
	daptest.Decode(t, ev, &body)
	if body.ThreadId != 7 || !body.AllThreadsContinued {
		t.Errorf("continued event = %s", ev.Raw)
	}
	c.Expect(t, "the resumption note", outputs("important", "resumed the target after"))
}

func TestAContinueBeforeTheLimitStopsTheClock(t *testing.T) {
	a := &attacher{staging: dap.Staging{StopLimit: 300 * time.Millisecond, Limit: "test"}}
	c, _ := startSession(t, a, dap.Options{})
	attached(t, c)
	a.debugger.send(map[string]any{"type": "event", "event": "stopped", "body": map[string]any{"reason": "breakpoint", "threadId": 1}})
	c.ExpectEvent(t, "stopped")
	c.ExpectResponse(t, c.Send("continue", godap.ContinueArguments{ThreadId: 1}))
	if m, ok := c.Poll(outputs("important", "resumed"), 700*time.Millisecond); ok {
		t.Fatalf("kdap resumed a target the user had continued: %s", m.Raw)
	}
	a.debugger.mu.Lock()
	defer a.debugger.mu.Unlock()
	continues := 0
	for _, m := range a.debugger.received {
		if m.Command == "continue" {
			continues++
		}
	}
	if continues != 1 {
		t.Errorf("debugger got %d continues, want the user's one", continues)
	}
}

func TestSnapshotCapturesAndResumesWithoutShowingTheStop(t *testing.T) {
	a := &attacher{staging: dap.Staging{Snapshot: true, SnapshotBy: `"mode": "snapshot"`}, replies: map[string]any{
		"stackTrace": map[string]any{"stackFrames": []map[string]any{
			{"id": 1000, "name": "main.handler", "line": 42, "column": 1, "source": map[string]any{"path": "/src/main.go"}},
			{"id": 1001, "name": "net/http.serve", "line": 7, "column": 1},
		}},
		"scopes":    map[string]any{"scopes": []map[string]any{{"name": "Locals", "variablesReference": 5, "expensive": false}, {"name": "Globals", "variablesReference": 6, "expensive": true}}},
		"variables": map[string]any{"variables": []map[string]any{{"name": "n", "value": "3", "type": "int", "variablesReference": 0}}},
	}}
	c, _ := startSession(t, a, dap.Options{})
	attached(t, c)
	for hit := 1; hit <= 2; hit++ {
		a.debugger.send(map[string]any{"type": "event", "event": "stopped", "body": map[string]any{"reason": "breakpoint", "threadId": 3}})
		ev := c.Expect(t, "the snapshot", outputs("console", "kdap snapshot"))
		var body godap.OutputEventBody
		daptest.Decode(t, ev, &body)
		if !strings.Contains(body.Output, "/src/main.go:42 in main.handler") || !strings.Contains(body.Output, "hit "+string(rune('0'+hit))+" here") {
			t.Errorf("snapshot %d = %q", hit, body.Output)
		}
		if body.VariablesReference == 0 {
			t.Fatalf("snapshot has nothing to expand: %s", ev.Raw)
		}
		frames := variables(t, c, body.VariablesReference)
		if len(frames) != 2 || !strings.Contains(frames[0].Value, "main.handler") || frames[0].VariablesReference == 0 {
			t.Fatalf("frames = %+v", frames)
		}
		scopes := variables(t, c, frames[0].VariablesReference)
		if len(scopes) != 1 || scopes[0].Name != "Locals" {
			t.Fatalf("scopes = %+v (an expensive scope is not read)", scopes)
		}
		locals := variables(t, c, scopes[0].VariablesReference)
		if len(locals) != 1 || locals[0].Name != "n" || locals[0].Value != "3" {
			t.Errorf("locals = %+v", locals)
		}
	}
	for _, m := range c.Recent() {
		if strings.Contains(m, `"event":"stopped"`) {
			t.Errorf("the IDE saw a stop in snapshot mode: %s", m)
		}
	}
	resp := c.ExpectAnyResponse(t, c.Send("pause", godap.PauseArguments{ThreadId: 3}))
	if resp.Success || !strings.Contains(resp.ErrorText(), `snapshot mode ("mode": "snapshot")`) {
		t.Errorf("pause in snapshot mode = %s", resp.Raw)
	}
}

// variables asks the session to expand ref.
func variables(t *testing.T, c *daptest.Client, ref int) []godap.Variable {
	t.Helper()
	resp := c.ExpectResponse(t, c.Send("variables", godap.VariablesArguments{VariablesReference: ref}))
	var body godap.VariablesResponseBody
	daptest.Decode(t, resp, &body)
	return body.Variables
}

func TestSessionLimitDetachesAndEnds(t *testing.T) {
	ended := make(chan dap.Summary, 1)
	a := &attacher{staging: dap.Staging{SessionLimit: 300 * time.Millisecond, SessionBy: "annotation kdap.dev/max-session=300ms",
		Ended: func(s dap.Summary) { ended <- s }}}
	c, s := startSession(t, a, dap.Options{})
	attached(t, c)
	disc := a.debugger.expect(t, "kdap's disconnect", func(m *dap.Message) bool { return m.Command == "disconnect" })
	if strings.Contains(string(disc.Arguments()), `"terminateDebuggee":true`) {
		t.Errorf("disconnect at the session limit terminates the target: %s", disc.Arguments())
	}
	c.Expect(t, "the note", outputs("important", "annotation kdap.dev/max-session=300ms"))
	c.ExpectEvent(t, "terminated")
	if err := s.wait(t); err != nil {
		t.Errorf("Serve = %v", err)
	}
	if sum := <-ended; !strings.Contains(sum.Reason, "maximum session length") || sum.Duration < 300*time.Millisecond {
		t.Errorf("summary = %+v", sum)
	}
}
