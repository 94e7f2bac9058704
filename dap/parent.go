package dap

import (
	"encoding/json"
	"fmt"

	godap "github.com/google/go-dap"
)

// close releases what a finished attach returned, if the session will not
// use it.
func (d *Debugger) close() {
	switch {
	case d == nil:
	case d.Children != nil:
		d.Children.Stop()
	case d.Conn != nil:
		d.Conn.Close()
	}
}

// becomeParent answers the attach of a parent session: it debugs nothing
// itself, so the client's configuration requests are answered here and
// every child received is started through startDebugging.
func (s *session) becomeParent(c *Children) {
	s.state = parent
	s.children = c
	s.endProgress("attached")
	send(s.client, &godap.AttachResponse{Response: response(s.attachReq)})
	s.attachReq = nil
	send(s.client, &godap.InitializedEvent{Event: event("initialized")})
	for _, m := range s.pending {
		s.asParent(m)
	}
	s.pending = nil
}

// startChild asks the client to start one child session.
func (s *session) startChild(c Child) {
	name, _ := c.Configuration["name"].(string)
	seq, err := s.client.Send(map[string]any{"seq": 0, "type": "request", "command": "startDebugging",
		"arguments": godap.StartDebuggingRequestArguments{Request: "attach", Configuration: c.Configuration}})
	if err == nil {
		s.childStarts[seq] = name
	}
}

// asParent answers a request to a parent session: configuration requests
// succeed (breakpoints bind in the children), threads are none, and
// everything else is for a child session.
func (s *session) asParent(m *Message) (done bool, err error) {
	switch m.Command {
	case "disconnect", "terminate":
		return true, send(s.client, &godap.Response{ProtocolMessage: godap.ProtocolMessage{Type: "response"}, RequestSeq: m.Seq, Success: true, Command: m.Command})
	case "configurationDone", "setExceptionBreakpoints":
		return false, send(s.client, &godap.Response{ProtocolMessage: godap.ProtocolMessage{Type: "response"}, RequestSeq: m.Seq, Success: true, Command: m.Command})
	case "setBreakpoints", "setFunctionBreakpoints":
		var args struct {
			Breakpoints []json.RawMessage `json:"breakpoints"`
		}
		json.Unmarshal(m.Arguments(), &args)
		bps := make([]godap.Breakpoint, len(args.Breakpoints))
		for i := range bps {
			bps[i].Message = "kdap: bound in each child session"
		}
		return false, send(s.client, &godap.SetBreakpointsResponse{Response: response(m), Body: godap.SetBreakpointsResponseBody{Breakpoints: bps}})
	case "threads":
		return false, send(s.client, &godap.ThreadsResponse{Response: response(m), Body: godap.ThreadsResponseBody{Threads: []godap.Thread{}}})
	}
	return false, send(s.client, errorResponse(m, ErrIDParentSession,
		fmt.Sprintf("%q: this session only starts one child session per process or pod; select a child session", m.Command), false))
}
