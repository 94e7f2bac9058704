package dap_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	godap "github.com/google/go-dap"
	"go.uber.org/goleak"

	"github.com/kdap/kdap/dap"
	"github.com/kdap/kdap/dap/daptest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeDebugger is an in-process DAP server standing in for a debugger at the
// one seam where a real one cannot be told to misbehave on cue. It answers
// initialize and attach like dlv, echoes every other request with a
// response carrying the arguments it received, and records what it got.
type fakeDebugger struct {
	conn net.Conn
	w    *dap.Writer

	replies map[string]any // canned response bodies by command

	mu       sync.Mutex
	seq      int
	received []*dap.Message
	got      chan *dap.Message
}

func newFakeDebugger(conn net.Conn, replies map[string]any) *fakeDebugger {
	d := &fakeDebugger{conn: conn, w: dap.NewWriter(conn), got: make(chan *dap.Message, 100), replies: replies}
	go d.serve()
	return d
}

func (d *fakeDebugger) serve() {
	defer close(d.got)
	r := dap.NewReader(d.conn)
	for {
		raw, err := r.Read()
		if err != nil {
			return
		}
		m, err := dap.Parse(raw)
		if err != nil {
			return
		}
		d.mu.Lock()
		d.received = append(d.received, m)
		d.mu.Unlock()
		d.got <- m
		if m.Type != "request" {
			continue
		}
		switch m.Command {
		case "initialize":
			d.respond(m, true, "", godap.Capabilities{SupportsConfigurationDoneRequest: true, SupportsConditionalBreakpoints: true,
				SupportsTerminateRequest: true, SupportTerminateDebuggee: true})
		case "attach":
			d.send(map[string]any{"type": "event", "event": "initialized"})
			d.respond(m, true, "", nil)
		case "unknownToDebugger":
			d.respond(m, false, "unsupported command", nil)
		case "disconnect":
			d.respond(m, true, "", nil)
			d.conn.Close()
			return
		default:
			if body, ok := d.replies[m.Command]; ok {
				d.respond(m, true, "", body)
				continue
			}
			d.respond(m, true, "", map[string]any{"echo": m.Arguments()})
		}
	}
}

func (d *fakeDebugger) respond(req *dap.Message, ok bool, msg string, body any) {
	resp := map[string]any{"type": "response", "request_seq": req.Seq, "command": req.Command, "success": ok}
	if msg != "" {
		resp["message"] = msg
	}
	if body != nil {
		resp["body"] = body
	}
	d.send(resp)
}

// send writes a message with the debugger's next seq and returns the seq.
func (d *fakeDebugger) send(msg map[string]any) int {
	d.mu.Lock()
	d.seq++
	msg["seq"] = d.seq
	seq := d.seq
	d.mu.Unlock()
	raw, _ := json.Marshal(msg)
	d.w.Write(raw)
	return seq
}

// expect waits for a message the debugger received.
func (d *fakeDebugger) expect(t *testing.T, what string, match func(*dap.Message) bool) *dap.Message {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case m, ok := <-d.got:
			if !ok {
				t.Fatalf("debugger connection ended before %s", what)
			}
			if match(m) {
				return m
			}
		case <-timeout:
			t.Fatalf("debugger did not receive %s", what)
		}
	}
}

// expectClosed waits until kdap has closed the debugger's connection.
func (d *fakeDebugger) expectClosed(t *testing.T) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-d.got:
			if !ok {
				return
			}
		case <-timeout:
			t.Fatal("kdap did not close the debugger connection")
		}
	}
}

// attacher hands out the fake debugger, or fails, or blocks until cancelled.
type attacher struct {
	err       error
	block     bool
	cancelled chan struct{}
	steps     []string
	debugger  *fakeDebugger
	args      json.RawMessage // what the client's attach carried
	heartbeat dap.Heartbeat
	lost      func() string
	staging   dap.Staging
	replies   map[string]any
	panics    bool // Attach panics, as a bug in kdap's attach would
}

func (a *attacher) Attach(ctx context.Context, req dap.AttachRequest, r dap.Reporter) (*dap.Debugger, error) {
	args := req.Arguments
	a.args = args
	for _, s := range a.steps {
		r.Progress(s)
	}
	if a.block {
		<-ctx.Done()
		close(a.cancelled)
		return nil, ctx.Err()
	}
	if a.err != nil {
		return nil, a.err
	}
	if a.panics {
		panic("index out of range [3] with length 3")
	}
	kdapSide, debuggerSide := net.Pipe()
	a.debugger = newFakeDebugger(debuggerSide, a.replies)
	return &dap.Debugger{Conn: kdapSide, AttachArguments: json.RawMessage(`{"mode":"remote","translated":true}`), Heartbeat: a.heartbeat, Lost: a.lost, Staging: a.staging}, nil
}

// served is the result of one dap.Serve.
type served struct {
	done chan struct{}
	err  error
}

// wait returns Serve's result, failing the test if it does not return soon.
func (s *served) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-s.done:
		return s.err
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
		return nil
	}
}

// startSession runs dap.Serve on one end of a pipe and returns a client on
// the other. When the test ends the client closes and Serve must return.
func startSession(t *testing.T, a dap.Attacher, opts dap.Options) (*daptest.Client, *served) {
	t.Helper()
	clientSide, kdapSide := net.Pipe()
	s := &served{done: make(chan struct{})}
	go func() {
		s.err = dap.Serve(context.Background(), kdapSide, a, opts)
		close(s.done)
	}()
	c := daptest.NewClient(clientSide)
	t.Cleanup(func() {
		c.Close()
		s.wait(t)
	})
	return c, s
}

// attach runs initialize + attach and returns the client's attach seq.
func attach(t *testing.T, c *daptest.Client, progress bool) int {
	t.Helper()
	init := c.Send("initialize", godap.InitializeRequestArguments{AdapterID: "kdap", LinesStartAt1: true, SupportsProgressReporting: progress})
	c.ExpectResponse(t, init)
	seq := c.Send("attach", map[string]any{"target": "pod/web", "localRoot": "/src"})
	return seq
}

func TestAttachThenRelayWithRenumberedSeqs(t *testing.T) {
	a := &attacher{steps: []string{"injecting debugger", "forwarding"}}
	c, _ := startSession(t, a, dap.Options{})
	// Spend a client seq before attaching, so the client's numbering (1 early,
	// 2 initialize, 3 attach, 4 threads) differs from the debugger's (1 initialize,
	// 2 attach, 3 threads).
	c.ExpectAnyResponse(t, c.Send("early", nil))
	attachSeq := attach(t, c, true)

	c.ExpectEvent(t, "progressStart")
	update := c.ExpectEvent(t, "progressUpdate")
	if !strings.Contains(string(update.Raw), "injecting debugger") {
		t.Errorf("first progress update = %s", update.Raw)
	}
	caps := c.ExpectEvent(t, "capabilities")
	var body godap.CapabilitiesEventBody
	daptest.Decode(t, caps, &body)
	if !body.Capabilities.SupportsConditionalBreakpoints {
		t.Errorf("capabilities event does not carry the debugger's capabilities: %s", caps.Raw)
	}
	c.ExpectEvent(t, "initialized")
	c.ExpectResponse(t, attachSeq)

	if string(a.args) != `{"localRoot":"/src","target":"pod/web"}` {
		t.Errorf("attacher got args %s", a.args)
	}
	dbgAttach := a.debugger.expect(t, "attach", func(m *dap.Message) bool { return m.Command == "attach" })
	if string(dbgAttach.Arguments()) != `{"mode":"remote","translated":true}` {
		t.Errorf("debugger's attach arguments = %s, want the Attacher's translation", dbgAttach.Arguments())
	}

	// Requests are relayed untouched apart from seq; responses come back
	// with the client's request_seq.
	seq := c.Send("threads", map[string]any{"k": "v"})
	got := a.debugger.expect(t, "threads", func(m *dap.Message) bool { return m.Command == "threads" })
	if seq != 4 || got.Seq != 3 {
		t.Errorf("client sent threads as seq %d, debugger got seq %d; want 4 and 3", seq, got.Seq)
	}
	if string(got.Arguments()) != `{"k":"v"}` {
		t.Errorf("arguments changed in relay: %s", got.Arguments())
	}
	resp := c.ExpectResponse(t, seq) // matched by request_seq == 4
	if !strings.Contains(string(resp.Raw), `"echo":{"k":"v"}`) {
		t.Errorf("response body changed in relay: %s", resp.Raw)
	}
}

func TestSeqsTowardsClientIncrease(t *testing.T) {
	a := &attacher{}
	clientSide, kdapSide := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- dap.Serve(context.Background(), kdapSide, a, dap.Options{}) }()
	defer func() { clientSide.Close(); <-done }()
	w, r := dap.NewWriter(clientSide), dap.NewReader(clientSide)
	w.Write([]byte(`{"seq":1,"type":"request","command":"initialize","arguments":{"adapterID":"kdap"}}`))
	w.Write([]byte(`{"seq":2,"type":"request","command":"attach","arguments":{}}`))
	last := 0
	for i := 0; i < 4; i++ { // initialize response, capabilities, initialized, attach response
		raw, err := r.Read()
		if err != nil {
			t.Fatal(err)
		}
		m, _ := dap.Parse(raw)
		if m.Seq <= last {
			t.Fatalf("seq %d after %d: %s", m.Seq, last, raw)
		}
		last = m.Seq
	}
}

func TestUnknownCommandsAndEventsDoNotEndTheSession(t *testing.T) {
	a := &attacher{}
	c, _ := startSession(t, a, dap.Options{})
	c.ExpectResponse(t, attach(t, c, false))

	seq := c.Send("unknownToDebugger", map[string]int{"x": 1})
	if resp := c.ExpectAnyResponse(t, seq); resp.Success || resp.ErrorText() != "unsupported command" {
		t.Errorf("unknown command's response = %s", resp.Raw)
	}
	a.debugger.send(map[string]any{"type": "event", "event": "someCustomEvent", "body": map[string]int{"n": 3}})
	ev := c.ExpectEvent(t, "someCustomEvent")
	if !strings.Contains(string(ev.Raw), `"body":{"n":3}`) {
		t.Errorf("custom event changed: %s", ev.Raw)
	}
	c.ExpectResponse(t, c.Send("threads", nil)) // still alive
}

func TestReverseRequestsPassThroughBothWays(t *testing.T) {
	a := &attacher{}
	c, _ := startSession(t, a, dap.Options{})
	c.ExpectResponse(t, attach(t, c, false))

	dseq := a.debugger.send(map[string]any{"type": "request", "command": "startDebugging",
		"arguments": map[string]any{"request": "attach", "configuration": map[string]int{"port": 1}}})
	req := c.ExpectRequest(t, "startDebugging")
	if !strings.Contains(string(req.Raw), `"configuration":{"port":1}`) {
		t.Errorf("reverse request changed: %s", req.Raw)
	}
	resp, _ := json.Marshal(map[string]any{"seq": c.NextSeq(), "type": "response", "request_seq": req.Seq, "command": "startDebugging", "success": true})
	c.SendRaw(resp)
	got := a.debugger.expect(t, "startDebugging response", func(m *dap.Message) bool { return m.Type == "response" })
	if got.RequestSeq != dseq || got.Command != "startDebugging" || !got.Success {
		t.Errorf("debugger got %s; want request_seq %d", got.Raw, dseq)
	}
}

func TestAttachFailureIsShownToTheUser(t *testing.T) {
	a := &attacher{err: errors.New(`pod "web" not found in namespace "default"; did you mean "web-7d9f"?`)}
	c, _ := startSession(t, a, dap.Options{})
	seq := attach(t, c, true)
	c.ExpectEvent(t, "progressStart")
	c.ExpectEvent(t, "progressEnd")
	resp := c.ExpectAnyResponse(t, seq)
	var body godap.ErrorResponseBody
	daptest.Decode(t, resp, &body)
	if resp.Success || body.Error == nil || !body.Error.ShowUser || body.Error.Id != dap.ErrIDAttachFailed ||
		!strings.Contains(body.Error.Format, `did you mean "web-7d9f"`) {
		t.Errorf("attach failure response = %s", resp.Raw)
	}
}

func TestRequestsBeforeAttachAndLaunchAreAnswered(t *testing.T) {
	c, _ := startSession(t, &attacher{}, dap.Options{})
	seq := c.Send("threads", nil)
	if r := c.ExpectAnyResponse(t, seq); r.Success || !strings.Contains(r.ErrorText(), "attach") {
		t.Errorf("threads before attach = %s", r.Raw)
	}
	seq = c.Send("launch", map[string]any{"program": "x"})
	if r := c.ExpectAnyResponse(t, seq); r.Success || !strings.Contains(r.ErrorText(), `"request": "attach"`) {
		t.Errorf("launch = %s", r.Raw)
	}
}

func TestDisconnectRefusesToTerminateTheTarget(t *testing.T) {
	a := &attacher{}
	c, done := startSession(t, a, dap.Options{})
	c.ExpectResponse(t, attach(t, c, false))

	seq := c.Send("disconnect", godap.DisconnectArguments{TerminateDebuggee: true})
	got := a.debugger.expect(t, "disconnect", func(m *dap.Message) bool { return m.Command == "disconnect" })
	var args godap.DisconnectArguments
	json.Unmarshal(got.Arguments(), &args)
	if args.TerminateDebuggee {
		t.Errorf("debugger was asked to terminate the target: %s", got.Raw)
	}
	out := c.ExpectEvent(t, "output")
	if !strings.Contains(string(out.Raw), "keeps running") {
		t.Errorf("output = %s", out.Raw)
	}
	c.ExpectResponse(t, seq)
	if err := done.wait(t); err != nil {
		t.Errorf("Serve after disconnect = %v", err)
	}
}

func TestDisconnectMayTerminateWhenAllowed(t *testing.T) {
	a := &attacher{}
	c, _ := startSession(t, a, dap.Options{AllowTerminate: true})
	c.ExpectResponse(t, attach(t, c, false))
	c.Send("disconnect", godap.DisconnectArguments{TerminateDebuggee: true})
	got := a.debugger.expect(t, "disconnect", func(m *dap.Message) bool { return m.Command == "disconnect" })
	if !strings.Contains(string(got.Raw), `"terminateDebuggee":true`) {
		t.Errorf("terminateDebuggee dropped although allowed: %s", got.Raw)
	}
}

func TestLostDebuggerTerminatesTheSessionCleanly(t *testing.T) {
	a := &attacher{lost: func() string { return "pod shop/web: container app is running" }}
	c, done := startSession(t, a, dap.Options{})
	c.ExpectResponse(t, attach(t, c, false))

	a.debugger.conn.Close()
	out := c.ExpectEvent(t, "output")
	if !strings.Contains(string(out.Raw), "lost the connection to the debugger") || !strings.Contains(string(out.Raw), "; pod shop/web: container app is running; start a new session") {
		t.Errorf("output = %s, want the loss and what the cluster says of the target", out.Raw)
	}
	c.ExpectEvent(t, "terminated")
	seq := c.Send("threads", nil)
	var body godap.ErrorResponseBody
	daptest.Decode(t, c.ExpectAnyResponse(t, seq), &body)
	if body.Error == nil || body.Error.Id != dap.ErrIDDebuggerLost {
		t.Errorf("request after loss: %+v", body.Error)
	}
	c.ExpectResponse(t, c.Send("disconnect", nil))
	if err := done.wait(t); err != nil {
		t.Errorf("Serve = %v", err)
	}
}

// A panic in kdap while attaching fails that request and leaves the
// session (and the process) alive; one while handling the debugger's
// messages ends the session cleanly.
func TestPanicsFailTheirRequestNotTheSession(t *testing.T) {
	t.Run("attach", func(t *testing.T) {
		c, done := startSession(t, &attacher{panics: true}, dap.Options{})
		r := c.ExpectAnyResponse(t, attach(t, c, false))
		if r.Success || !strings.Contains(r.ErrorText(), "a bug in kdap") || !strings.Contains(r.ErrorText(), "index out of range") {
			t.Errorf("attach that panicked: %s", r.Raw)
		}
		c.ExpectResponse(t, c.Send("disconnect", nil))
		if err := done.wait(t); err != nil {
			t.Errorf("Serve = %v", err)
		}
	})
	// A panic while handling the debugger's messages ends the session (so
	// the agent resumes the target), saying why.
	t.Run("a message from the debugger", func(t *testing.T) {
		a := &attacher{lost: func() string { panic("nil map") }}
		c, done := startSession(t, a, dap.Options{})
		c.ExpectResponse(t, attach(t, c, false))
		a.debugger.conn.Close()
		out := c.Expect(t, "the panic told", func(m *dap.Message) bool {
			return m.Type == "event" && m.Event == "output" && strings.Contains(string(m.Raw), "kdap failed while handling a message from the debugger")
		})
		if !strings.Contains(string(out.Raw), "nil map") {
			t.Errorf("output %s does not say what failed", out.Raw)
		}
		if err := done.wait(t); err == nil || !strings.Contains(err.Error(), "a bug in kdap") {
			t.Errorf("Serve = %v, want the panic", err)
		}
	})
}

func TestClientGoingAwayClosesTheDebuggerConnection(t *testing.T) {
	a := &attacher{}
	c, done := startSession(t, a, dap.Options{})
	c.ExpectResponse(t, attach(t, c, false))
	c.Close()
	if err := done.wait(t); err != nil {
		t.Errorf("Serve = %v", err)
	}
	a.debugger.expectClosed(t)
}

func TestDisconnectWhileAttachingCancelsTheAttach(t *testing.T) {
	a := &attacher{block: true, cancelled: make(chan struct{})}
	c, done := startSession(t, a, dap.Options{})
	attachSeq := attach(t, c, false)
	seq := c.Send("disconnect", nil)
	if r := c.ExpectAnyResponse(t, attachSeq); r.Success {
		t.Errorf("attach succeeded after disconnect: %s", r.Raw)
	}
	c.ExpectResponse(t, seq)
	select {
	case <-a.cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the attach was not cancelled")
	}
	if err := done.wait(t); err != nil {
		t.Errorf("Serve = %v", err)
	}
}

func TestMalformedInput(t *testing.T) {
	t.Run("not JSON is reported and skipped", func(t *testing.T) {
		c, _ := startSession(t, &attacher{}, dap.Options{})
		c.SendRaw([]byte(`this is not json`))
		out := c.ExpectEvent(t, "output")
		if !strings.Contains(string(out.Raw), "ignored a message from the IDE") {
			t.Errorf("output = %s", out.Raw)
		}
		c.ExpectResponse(t, c.Send("initialize", map[string]any{"adapterID": "kdap"}))
	})
	t.Run("broken framing ends the session with an error", func(t *testing.T) {
		clientSide, kdapSide := net.Pipe()
		done := make(chan error, 1)
		go func() { done <- dap.Serve(context.Background(), kdapSide, &attacher{}, dap.Options{}) }()
		clientSide.Write([]byte("Content-Length: nope\r\n\r\n"))
		var pe *dap.ProtocolError
		if err := <-done; !errors.As(err, &pe) {
			t.Errorf("Serve = %v, want a *dap.ProtocolError", err)
		}
		clientSide.Close()
	})
}

func TestHalfClosedConnections(t *testing.T) {
	// Real TCP, so each side can close only its write half.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		conn, err := ln.Accept()
		if err == nil {
			accepted <- conn
		}
	}()
	clientConn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	kdapConn := <-accepted
	a := &attacher{}
	done := make(chan error, 1)
	go func() { done <- dap.Serve(context.Background(), kdapConn, a, dap.Options{}) }()
	c := daptest.NewClient(clientConn)
	defer c.Close()
	c.ExpectResponse(t, attach(t, c, false))

	// The IDE stops writing (half-close): kdap treats it as gone and lets go
	// of the debugger, and the IDE's read side sees the end.
	clientConn.(*net.TCPConn).CloseWrite()
	if err := <-done; err != nil {
		t.Errorf("Serve = %v", err)
	}
	c.ExpectClosed(t)
	a.debugger.expectClosed(t)
}

func TestTerminateIsRefusedUnlessAllowed(t *testing.T) {
	for _, allow := range []bool{false, true} {
		t.Run(fmt.Sprintf("allow=%v", allow), func(t *testing.T) {
			a := &attacher{}
			c, _ := startSession(t, a, dap.Options{AllowTerminate: allow})
			seq := attach(t, c, false)
			var caps godap.CapabilitiesEventBody
			daptest.Decode(t, c.ExpectEvent(t, "capabilities"), &caps)
			if got := caps.Capabilities.SupportsTerminateRequest || caps.Capabilities.SupportTerminateDebuggee; got != allow {
				t.Errorf("terminate capabilities announced = %v, want %v", got, allow)
			}
			c.ExpectResponse(t, seq)
			resp := c.ExpectAnyResponse(t, c.Send("terminate", nil))
			if allow {
				a.debugger.expect(t, "terminate", func(m *dap.Message) bool { return m.Command == "terminate" })
				return
			}
			var body godap.ErrorResponseBody
			daptest.Decode(t, resp, &body)
			if resp.Success || body.Error == nil || body.Error.Id != dap.ErrIDTerminateRefused || !strings.Contains(body.Error.Format, "--allow-terminate") {
				t.Errorf("terminate answered %s", resp.Raw)
			}
			c.ExpectResponse(t, c.Send("threads", nil)) // the session goes on
			a.debugger.mu.Lock()
			for _, m := range a.debugger.received {
				if m.Command == "terminate" {
					t.Error("the debugger received terminate")
				}
			}
			a.debugger.mu.Unlock()
		})
	}
}

func TestHeartbeatsGoToTheDebuggerFromConnectingOn(t *testing.T) {
	a := &attacher{heartbeat: dap.Heartbeat{Every: 20 * time.Millisecond, Command: "kdap/heartbeat"}}
	c, _ := startSession(t, a, dap.Options{})
	attachSeq := attach(t, c, false)
	c.ExpectResponse(t, attachSeq)
	isBeat := func(m *dap.Message) bool { return m.Type == "request" && m.Command == "kdap/heartbeat" }
	first := a.debugger.expect(t, "a heartbeat", isBeat)
	for i := 0; i < 3; i++ {
		a.debugger.expect(t, "more heartbeats", isBeat)
	}
	a.debugger.mu.Lock()
	firstIndex := -1
	for i, m := range a.debugger.received {
		if m == first {
			firstIndex = i
		}
	}
	a.debugger.mu.Unlock()
	if firstIndex != 0 {
		t.Errorf("the first heartbeat was message %d the debugger got; want it before initialize", firstIndex)
	}
	// The fake debugger answers them; the IDE sees none of it.
	threads := c.Send("threads", nil)
	c.ExpectResponse(t, threads)
	for _, raw := range c.Recent() {
		if strings.Contains(raw, "kdap/heartbeat") {
			t.Errorf("the IDE got %s", raw)
		}
	}
}
