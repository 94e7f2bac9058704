package dap_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	godap "github.com/google/go-dap"

	"github.com/kdap/kdap/dap"
	"github.com/kdap/kdap/dap/daptest"
)

// parentAttacher returns a parent session with the children it is given,
// and records what it saw.
type parentAttacher struct {
	children      chan dap.Child
	stopped       atomic.Bool
	childSessions bool
}

func (a *parentAttacher) Attach(ctx context.Context, req dap.AttachRequest, r dap.Reporter) (*dap.Debugger, error) {
	a.childSessions = req.ChildSessions
	done := make(chan struct{})
	return &dap.Debugger{Children: &dap.Children{Start: a.children, Stop: func() { a.stopped.Store(true); close(done) }}}, nil
}

// TestParentSessionStartsChildren: a parent session answers the client
// itself, asks it to start one child per configuration — later ones too —
// reports a child the client refused, and stops its feed when it ends.
func TestParentSessionStartsChildren(t *testing.T) {
	a := &parentAttacher{children: make(chan dap.Child, 4)}
	for _, pid := range []int{8, 9} {
		a.children <- dap.Child{Configuration: map[string]any{"name": fmt.Sprintf("web pid %d", pid), "target": "pod/web", "process": fmt.Sprint(pid)}}
	}
	c, s := startSession(t, a, dap.Options{})
	c.ExpectResponse(t, c.Send("initialize", godap.InitializeRequestArguments{AdapterID: "kdap", SupportsStartDebuggingRequest: true}))
	attachSeq := c.Send("attach", map[string]any{"target": "deployment/web", "replicas": "all"})
	c.ExpectResponse(t, attachSeq)
	if !a.childSessions {
		t.Error("the attacher was not told that the client takes startDebugging")
	}
	c.ExpectEvent(t, "initialized")
	for _, pid := range []string{"8", "9"} {
		req := c.ExpectRequest(t, "startDebugging")
		var args godap.StartDebuggingRequestArguments
		if err := json.Unmarshal(req.Arguments(), &args); err != nil {
			t.Fatal(err)
		}
		if args.Request != "attach" || args.Configuration["process"] != pid || args.Configuration["target"] != "pod/web" {
			t.Errorf("startDebugging = %s, want an attach of process %s", req.Raw, pid)
		}
		resp, _ := json.Marshal(map[string]any{"seq": c.NextSeq(), "type": "response", "request_seq": req.Seq, "command": "startDebugging", "success": true})
		c.SendRaw(resp)
	}

	bp := c.Send("setBreakpoints", map[string]any{"source": map[string]any{"path": "/src/app.py"}, "breakpoints": []map[string]any{{"line": 3}, {"line": 9}}})
	var bps godap.SetBreakpointsResponseBody
	daptest.Decode(t, c.ExpectResponse(t, bp), &bps)
	if len(bps.Breakpoints) != 2 || bps.Breakpoints[0].Verified {
		t.Errorf("parent's setBreakpoints = %+v, want two unverified (they bind in the children)", bps)
	}
	c.ExpectResponse(t, c.Send("configurationDone", nil))
	var threads godap.ThreadsResponseBody
	daptest.Decode(t, c.ExpectResponse(t, c.Send("threads", nil)), &threads)
	if len(threads.Threads) != 0 {
		t.Errorf("parent's threads = %+v, want none", threads)
	}
	if resp := c.ExpectAnyResponse(t, c.Send("stackTrace", map[string]any{"threadId": 1})); resp.Success || !strings.Contains(string(resp.Raw), "child session") {
		t.Errorf("stackTrace to the parent = %s, want an error pointing at the child sessions", resp.Raw)
	}

	// A worker that starts later; the client refuses it.
	a.children <- dap.Child{Configuration: map[string]any{"name": "web pid 12", "process": "12"}}
	req := c.ExpectRequest(t, "startDebugging")
	resp, _ := json.Marshal(map[string]any{"seq": c.NextSeq(), "type": "response", "request_seq": req.Seq, "command": "startDebugging", "success": false, "message": "no room"})
	c.SendRaw(resp)
	c.Expect(t, "output about the refused child", func(m *dap.Message) bool {
		return m.Type == "event" && m.Event == "output" && strings.Contains(string(m.Raw), "web pid 12") && strings.Contains(string(m.Raw), "no room")
	})

	c.ExpectResponse(t, c.Send("disconnect", nil))
	if err := s.wait(t); err != nil {
		t.Errorf("Serve = %v", err)
	}
	if !a.stopped.Load() {
		t.Error("the parent session ended without stopping its children's feed")
	}
}
