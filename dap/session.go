package dap

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	godap "github.com/google/go-dap"
)

// Attacher connects a session to a debugger. kdap's orchestration (inject,
// forward) implements it; tests use an in-process debugger.
type Attacher interface {
	// Attach finds the target described by the client's attach arguments,
	// connects to its debugger and returns the connection. It must return
	// promptly once ctx is done. Its error is shown to the user as is, so it
	// should say what to do.
	Attach(ctx context.Context, req AttachRequest, r Reporter) (*Debugger, error)
}

// AttachRequest is the client's attach, with what the client can do.
type AttachRequest struct {
	Arguments json.RawMessage
	// ChildSessions says the client takes startDebugging requests (its
	// initialize said supportsStartDebuggingRequest): a Debugger with
	// Children is then shown as a session per child.
	ChildSessions bool
}

// Reporter tells the user what a slow attach is doing.
type Reporter interface {
	Progress(step string) // a progressUpdate, or a console line for clients without progress support
	Output(text string)   // a line in the debug console
}

// Debugger is a connection to a debugger, ready for its DAP initialize —
// or, with Children instead of Conn, a parent session that debugs nothing
// itself and asks the client to start a child session per process or pod.
type Debugger struct {
	Conn            io.ReadWriteCloser
	AttachArguments json.RawMessage // arguments of the attach request sent to it
	Heartbeat       Heartbeat
	// Lost, if set, says what is known of the target once the connection
	// to the debugger is lost (it may ask the cluster); the user is told.
	Lost func() string
	// Children, when set, makes this a parent session (Conn is nil).
	Children *Children
	// Staging guards a target that serves others (see Staging).
	Staging Staging
}

// Children are the child sessions of a parent session: each Child
// received is started through the client's startDebugging request. The
// sender closes Start when no more will come; Stop, called once when the
// parent session ends, ends the sender and waits for it.
type Children struct {
	Start <-chan Child
	Stop  func()
}

// Child is one child session: the attach configuration the client starts
// it with (its "name" is the title the client shows).
type Child struct {
	Configuration map[string]any
}

// Heartbeat is a request the session sends the debugger every Every (if
// set), from connecting on, so that the far end can tell a live session
// that is quiet from one whose client has gone silent; it gets no answer.
type Heartbeat struct {
	Every   time.Duration
	Command string
}

// Options tune a session.
type Options struct {
	// AllowTerminate passes disconnect{terminateDebuggee: true} through.
	// By default it is rewritten to false: a debug session never kills the
	// target unless the user asked kdap for that.
	AllowTerminate bool
	// Trace, if set, receives every message in both directions.
	Trace io.Writer
}

// Serve runs one DAP session on client until the client disconnects, the
// connection ends or ctx is done, then closes client and the debugger
// connection. It returns nil after an orderly disconnect.
//
// Goroutines: Serve itself runs the event loop, which owns all routing
// state; one reader goroutine per connection feeds it; Attach runs in its own
// goroutine. Writes to a connection go through its Writer (one frame at a
// time). Serve waits for every goroutine it started before it returns.
func Serve(ctx context.Context, client io.ReadWriteCloser, attacher Attacher, opts Options) error {
	ctx, cancel := context.WithCancel(ctx)
	s := &session{
		opts:         opts,
		attacher:     attacher,
		done:         make(chan struct{}),
		forwarded:    map[int]int{},
		internal:     map[int]func(*Message){},
		reverse:      map[int]int{},
		childStarts:  map[int]string{},
		snapshots:    map[int]*snapshotNode{},
		snapshotHits: map[string]int{},
	}
	s.client = s.newPeer("IDE", client)
	defer func() {
		cancel()
		s.shutdown()
	}()
	return s.loop(ctx)
}

type state int

const (
	idle        state = iota // no debugger yet
	attaching                // Attacher running
	handshaking              // debugger connected, its initialize under way
	attached                 // relaying
	lost                     // the debugger connection ended
	parent                   // a parent of child sessions: no debugger of its own
)

type session struct {
	opts     Options
	attacher Attacher
	done     chan struct{} // closed at shutdown; unblocks readers
	wg       sync.WaitGroup
	peers    []*Peer // every connection opened, for shutdown

	// Owned by the loop goroutine.
	client, debugger *Peer
	state            state
	initArgs         json.RawMessage // the client's initialize arguments
	progress         bool            // the client supports progress events
	attachReq        *Message        // the client's attach request while attaching/handshaking
	attachArgs       json.RawMessage // what to send to the debugger's attach
	lostNote         func() string   // what is known of the target after a lost connection
	attachCancel     context.CancelFunc
	attachDone       chan attachResult
	pending          []*Message             // client requests that arrived while handshaking
	forwarded        map[int]int            // debugger-side seq of a relayed request → client seq
	internal         map[int]func(*Message) // debugger-side seq of kdap's own request → handler
	reverse          map[int]int            // client-side seq of a relayed reverse request → debugger seq
	disconnecting    bool
	heartbeat        *time.Ticker // while connected to a debugger that wants heartbeats
	heartbeatCommand string
	childSessions    bool           // the client takes startDebugging
	children         *Children      // a parent session's, once attached
	childStarts      map[int]string // client-side seq of a startDebugging request → the child's name

	staging      Staging
	stop         stopClock
	summary      Summary
	attachedAt   time.Time   // zero until attached
	sessionTimer *time.Timer // the session's maximum length
	finished     bool        // kdap ended the session (its maximum length)
	snapshots    map[int]*snapshotNode
	snapshotHits map[string]int // captures by location
	nextRef      int
}

type attachResult struct {
	dbg *Debugger
	err error
}

// loop is the event loop; it returns when the session is over.
func (s *session) loop(ctx context.Context) error {
	for {
		var fromDebugger <-chan Incoming
		var beat <-chan time.Time
		var childStart <-chan Child
		if s.children != nil {
			childStart = s.children.Start
		}
		if s.debugger != nil {
			fromDebugger = s.debugger.In()
			if s.heartbeat != nil {
				beat = s.heartbeat.C
			}
		}
		select {
		case <-timerC(s.stop.warn):
			s.warnStop()
		case <-timerC(s.stop.limit):
			s.limitStop()
		case <-timerC(s.sessionTimer):
			s.endSessionAtLimit()
			if s.finished {
				return nil
			}
		case <-beat:
			s.debugger.Send(map[string]any{"seq": 0, "type": "request", "command": s.heartbeatCommand})
		case <-ctx.Done():
			return ctx.Err()
		case in := <-s.client.In():
			if in.Err != nil {
				if errors.Is(in.Err, io.EOF) {
					return nil // the IDE went away; shutdown detaches
				}
				return fmt.Errorf("reading from the IDE: %w", in.Err)
			}
			if in.Bad != nil {
				s.output("stderr", fmt.Sprintf("kdap: ignored a message from the IDE: %v\n", in.Bad))
				continue
			}
			if done, err := s.handle(in.Msg, func() (bool, error) { return s.fromClient(ctx, in.Msg) }); done || err != nil {
				return err
			}
		case in := <-fromDebugger:
			if done, err := s.handle(nil, func() (bool, error) { return s.fromDebugger(in) }); done || err != nil {
				return err
			}
		case res := <-s.attachDone:
			s.attachFinished(res)
		case c, ok := <-childStart:
			if !ok {
				s.children.Start = nil // no more; the parent stays until the client ends it
				continue
			}
			s.startChild(c)
		}
	}
}

// handle runs the handler of one message. A panic in it — a bug in kdap —
// is told to the user. For the IDE's request (req) it fails that request
// and the session goes on. For a message from the debugger (req nil) it
// ends the session, which detaches: kdap may have been midway through
// resuming the target (a snapshot, a stop limit), and only ending lets
// the agent resume it for certain.
func (s *session) handle(req *Message, handler func() (bool, error)) (done bool, err error) {
	defer func() {
		p := recover()
		if p == nil {
			return
		}
		what := "a message from the debugger"
		if req != nil {
			what = fmt.Sprintf("the IDE's %q", req.Command)
		}
		msg := fmt.Sprintf("kdap failed while handling %s (a bug in kdap, please report it): %v", what, p)
		s.output("stderr", msg+"\n")
		if req == nil {
			done, err = true, errors.New(msg)
			return
		}
		if req.Type == "request" {
			send(s.client, errorResponse(req, ErrIDInternal, msg, false))
		}
		done, err = false, nil
	}()
	return handler()
}

// fromClient handles one message from the IDE; done ends the session.
func (s *session) fromClient(ctx context.Context, m *Message) (done bool, err error) {
	switch m.Type {
	case "response": // to a reverse request we relayed, or a child's start
		if name, ok := s.childStarts[m.RequestSeq]; ok {
			delete(s.childStarts, m.RequestSeq)
			if !m.Success {
				s.output("stderr", fmt.Sprintf("kdap: the IDE did not start the session for %s: %s\n", name, m.ErrorText()))
			}
			return false, nil
		}
		if dseq, ok := s.reverse[m.RequestSeq]; ok && s.state == attached {
			delete(s.reverse, m.RequestSeq)
			_, err := s.debugger.Relay(m, dseq, nil)
			return false, err
		}
		return false, nil
	case "event":
		return false, nil // clients send no events; nothing to relay it to
	}
	if s.state == parent {
		return s.asParent(m)
	}
	if s.state == attached {
		if m.Command == "terminate" && !s.opts.AllowTerminate {
			return false, send(s.client, errorResponse(m, ErrIDTerminateRefused,
				"kdap leaves the target running: disconnect instead, or start kdap with --allow-terminate to let the IDE stop it", true))
		}
		if m.Command == "disconnect" {
			m = s.guardDisconnect(m)
			s.disconnecting = true
		}
		if m.Command == "pause" && s.staging.Snapshot {
			return false, send(s.client, errorResponse(m, ErrIDSnapshotOnly,
				fmt.Sprintf("kdap does not pause the target in snapshot mode (%s): set a breakpoint to take a snapshot", s.staging.SnapshotBy), true))
		}
		if m.Command == "variables" {
			if resp, ok := s.snapshotVariablesResponse(m); ok {
				return false, send(s.client, resp)
			}
		}
		dseq, err := s.debugger.Relay(m, 0, nil)
		if err != nil {
			return false, err
		}
		s.forwarded[dseq] = m.Seq
		return false, nil
	}
	switch m.Command {
	case "initialize":
		s.initArgs = m.Arguments()
		var args godap.InitializeRequestArguments
		json.Unmarshal(s.initArgs, &args)
		s.progress = args.SupportsProgressReporting
		s.childSessions = args.SupportsStartDebuggingRequest
		resp := &godap.InitializeResponse{Response: response(m), Body: godap.Capabilities{
			SupportsConfigurationDoneRequest: true,
		}}
		return false, send(s.client, resp)
	case "attach":
		if s.state != idle {
			return false, send(s.client, errorResponse(m, ErrIDAlreadyAttaching, "this session is already attaching; start a new debug session for another target", false))
		}
		s.startAttach(ctx, m)
		return false, nil
	case "launch":
		return false, send(s.client, errorResponse(m, ErrIDLaunchUnsupported,
			`kdap attaches to processes already running in a pod: use "request": "attach" in the launch configuration`, true))
	case "disconnect", "terminate":
		if s.attachReq != nil {
			send(s.client, errorResponse(s.attachReq, ErrIDAttachFailed, "attach cancelled", false))
			s.attachReq = nil
		}
		return true, send(s.client, &godap.Response{ProtocolMessage: godap.ProtocolMessage{Type: "response"}, RequestSeq: m.Seq, Success: true, Command: m.Command})
	}
	if s.state == handshaking {
		s.pending = append(s.pending, m)
		return false, nil
	}
	if s.state == lost {
		return false, send(s.client, errorResponse(m, ErrIDDebuggerLost, "the connection to the debugger was lost; start a new debug session", true))
	}
	return false, send(s.client, errorResponse(m, ErrIDNotAttached, fmt.Sprintf("%q before attach: kdap needs an attach request first", m.Command), false))
}

// guardDisconnect turns terminateDebuggee off unless the user allowed it.
func (s *session) guardDisconnect(m *Message) *Message {
	var args godap.DisconnectArguments
	if raw := m.Arguments(); raw != nil {
		json.Unmarshal(raw, &args)
	}
	if !args.TerminateDebuggee || s.opts.AllowTerminate {
		return m
	}
	s.output("console", "kdap: the target keeps running (terminateDebuggee refused; start kdap with --allow-terminate to allow it)\n")
	var fields map[string]json.RawMessage
	if json.Unmarshal(m.Raw, &fields) != nil {
		return m
	}
	args.TerminateDebuggee = false
	fields["arguments"], _ = json.Marshal(args)
	raw, err := json.Marshal(fields)
	if err != nil {
		return m
	}
	if out, err := Parse(raw); err == nil {
		return out
	}
	return m
}

func (s *session) startAttach(ctx context.Context, m *Message) {
	s.state = attaching
	s.attachReq = m
	actx, cancel := context.WithCancel(ctx)
	s.attachCancel = cancel
	s.attachDone = make(chan attachResult, 1)
	if s.progress {
		send(s.client, &godap.ProgressStartEvent{Event: event("progressStart"), Body: godap.ProgressStartEventBody{
			ProgressId: progressID, Title: "kdap: attaching", RequestId: m.Seq,
		}})
	}
	req := AttachRequest{Arguments: m.Arguments(), ChildSessions: s.childSessions}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		var dbg *Debugger
		var err error
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("kdap failed while attaching (a bug in kdap, please report it): %v", p)
			}
			s.attachDone <- attachResult{dbg, err}
		}()
		dbg, err = s.attacher.Attach(actx, req, reporter{s})
		if err == nil && dbg == nil {
			err = errors.New("internal error: no debugger and no error from attach")
		}
	}()
}

const progressID = "kdap-attach"

// attachFinished continues with the debugger's initialize, or reports failure.
func (s *session) attachFinished(res attachResult) {
	s.attachDone = nil
	if s.attachReq == nil { // cancelled meanwhile
		res.dbg.close()
		return
	}
	if res.err != nil {
		s.failAttach(res.err.Error())
		return
	}
	if res.dbg.Children != nil {
		s.becomeParent(res.dbg.Children)
		return
	}
	s.debugger = s.newPeer("debugger", res.dbg.Conn)
	s.attachArgs = res.dbg.AttachArguments
	s.lostNote = res.dbg.Lost
	s.staging = res.dbg.Staging
	if hb := res.dbg.Heartbeat; hb.Every > 0 {
		s.stopHeartbeat()
		s.heartbeat, s.heartbeatCommand = time.NewTicker(hb.Every), hb.Command
		s.debugger.Send(map[string]any{"seq": 0, "type": "request", "command": hb.Command})
	}
	s.state = handshaking
	init := map[string]any{"seq": 0, "type": "request", "command": "initialize", "arguments": s.initArgs}
	if s.initArgs == nil {
		init["arguments"] = godap.InitializeRequestArguments{AdapterID: "kdap", LinesStartAt1: true, ColumnsStartAt1: true, PathFormat: "path"}
	}
	dseq, err := s.debugger.Send(init)
	if err != nil {
		s.failAttach(fmt.Sprintf("sending initialize to the debugger: %v", err))
		return
	}
	s.internal[dseq] = s.debuggerInitialized
}

// debuggerInitialized forwards the debugger's capabilities and sends it the
// attach request, whose response goes to the client's attach.
func (s *session) debuggerInitialized(resp *Message) {
	if !resp.Success {
		s.failAttach("the debugger could not start: " + resp.ErrorText())
		return
	}
	var caps godap.Capabilities
	if body := resp.Body(); body != nil {
		json.Unmarshal(body, &caps)
	}
	s.filterCapabilities(&caps) // so the IDE offers no way to stop the target
	send(s.client, &godap.CapabilitiesEvent{Event: event("capabilities"), Body: godap.CapabilitiesEventBody{Capabilities: caps}})
	attach := map[string]any{"seq": 0, "type": "request", "command": "attach", "arguments": s.attachArgs}
	dseq, err := s.debugger.Send(attach)
	if err != nil {
		s.failAttach(fmt.Sprintf("sending attach to the debugger: %v", err))
		return
	}
	s.forwarded[dseq] = s.attachReq.Seq
	s.attachReq = nil
	s.state = attached
	s.attachedAt = time.Now()
	if s.staging.SessionLimit > 0 {
		s.sessionTimer = time.NewTimer(s.staging.SessionLimit)
	}
	s.endProgress("attached")
	for _, m := range s.pending {
		dseq, err := s.debugger.Relay(m, 0, nil)
		if err != nil {
			break
		}
		s.forwarded[dseq] = m.Seq
	}
	s.pending = nil
}

func (s *session) failAttach(msg string) {
	s.endProgress("failed")
	if s.attachReq != nil {
		send(s.client, errorResponse(s.attachReq, ErrIDAttachFailed, msg, true))
		s.attachReq = nil
	}
	for _, m := range s.pending {
		send(s.client, errorResponse(m, ErrIDNotAttached, "attach failed", false))
	}
	s.pending = nil
	if s.debugger != nil {
		s.debugger.Close(0)
		s.debugger = nil
		s.stopHeartbeat()
	}
	s.state = idle
}

func (s *session) endProgress(msg string) {
	if s.progress {
		send(s.client, &godap.ProgressEndEvent{Event: event("progressEnd"), Body: godap.ProgressEndEventBody{ProgressId: progressID, Message: msg}})
	}
}

// fromDebugger handles one message (or the end) of the debugger connection.
func (s *session) fromDebugger(in Incoming) (done bool, err error) {
	if in.Err != nil {
		s.debugger.Close(0)
		s.debugger = nil
		s.stopHeartbeat()
		if s.disconnecting {
			return true, nil
		}
		if s.state == handshaking {
			s.failAttach(fmt.Sprintf("the debugger closed the connection during attach (%v)", in.Err))
			return false, nil
		}
		s.state = lost
		s.onRunning()
		msg := fmt.Sprintf("kdap: lost the connection to the debugger (%v): this session has ended", in.Err)
		if s.lostNote != nil {
			msg += "; " + s.lostNote()
		}
		s.output("stderr", msg+"; start a new session to debug again\n")
		send(s.client, &godap.TerminatedEvent{Event: event("terminated")})
		return false, nil
	}
	if in.Bad != nil {
		s.output("stderr", fmt.Sprintf("kdap: ignored a message from the debugger: %v\n", in.Bad))
		return false, nil
	}
	m := in.Msg
	switch m.Type {
	case "response":
		if h, ok := s.internal[m.RequestSeq]; ok {
			delete(s.internal, m.RequestSeq)
			h(m)
			return s.finished, nil
		}
		cseq, ok := s.forwarded[m.RequestSeq]
		if !ok {
			return false, nil // a response to nothing we sent
		}
		delete(s.forwarded, m.RequestSeq)
		if (m.Command == "continue" || m.Command == "reverseContinue") && m.Success {
			s.onRunning()
		}
		if _, err := s.client.Relay(m, cseq, nil); err != nil {
			return false, err
		}
		return m.Command == "disconnect", nil
	case "request": // reverse request (runInTerminal, startDebugging, …)
		cseq, err := s.client.Relay(m, 0, nil)
		s.reverse[cseq] = m.Seq
		return false, err
	default:
		return false, s.debuggerEvent(m)
	}
}

// debuggerEvent relays an event of the debugger, after what the session's
// guards take from it: capabilities are filtered, stops are timed, and in
// snapshot mode a stop is captured and resumed, never shown.
func (s *session) debuggerEvent(m *Message) error {
	switch m.Event {
	case "capabilities":
		return send(s.client, s.capabilitiesEvent(m))
	case "stopped":
		var body godap.StoppedEventBody
		json.Unmarshal(m.Body(), &body)
		if s.staging.Snapshot {
			s.takeSnapshot(body.ThreadId, body.Reason)
			return nil
		}
		s.onStopped(body.ThreadId)
	case "continued":
		if s.staging.Snapshot {
			return nil
		}
		s.onRunning()
	}
	_, err := s.client.Relay(m, 0, nil)
	return err
}

// stopHeartbeat stops the heartbeat, if one runs.
func (s *session) stopHeartbeat() {
	if s.heartbeat != nil {
		s.heartbeat.Stop()
		s.heartbeat = nil
	}
}

// newPeer starts a connection of the session (see Peer).
func (s *session) newPeer(name string, conn io.ReadWriteCloser) *Peer {
	p := NewPeer(name, conn, s.opts.Trace, s.done, &s.wg)
	s.peers = append(s.peers, p)
	return p
}

// send queues a message built here to p.
func send(p *Peer, v any) error {
	_, err := p.Send(v)
	return err
}

// output sends an output event to the client (errors are ignored: if the
// client is gone the loop notices on its reader).
func (s *session) output(category, text string) {
	send(s.client, &godap.OutputEvent{Event: event("output"), Body: godap.OutputEventBody{Category: category, Output: text}})
}

// shutdown cancels an attach, closes both connections and waits for every
// goroutine the session started.
func (s *session) shutdown() {
	s.stopHeartbeat()
	s.stop.stopTimers()
	if s.sessionTimer != nil {
		s.sessionTimer.Stop()
	}
	if !s.attachedAt.IsZero() && s.staging.Ended != nil {
		s.onRunning()
		s.summary.Duration = time.Since(s.attachedAt)
		s.staging.Ended(s.summary)
	}
	if s.attachCancel != nil {
		s.attachCancel()
	}
	if s.attachDone != nil {
		res := <-s.attachDone
		res.dbg.close()
	}
	if s.children != nil {
		s.children.Stop()
	}
	// The debugger first, so it sees the end before the IDE does; each gets
	// what is queued for it (the last response, a terminated event).
	for i := len(s.peers) - 1; i >= 0; i-- {
		s.peers[i].Close(shutdownGrace)
	}
	close(s.done)
	s.wg.Wait()
}

// shutdownGrace bounds how long shutdown waits for a peer that does not read
// the last messages queued for it.
const shutdownGrace = 2 * time.Second

// reporter adapts the session to the Reporter an Attacher sees; it may be
// called from the attach goroutine (sends are serialised by the peer).
type reporter struct{ s *session }

func (r reporter) Progress(step string) {
	if r.s.progress {
		send(r.s.client, &godap.ProgressUpdateEvent{Event: event("progressUpdate"), Body: godap.ProgressUpdateEventBody{ProgressId: progressID, Message: step}})
		return
	}
	r.s.output("console", "kdap: "+step+"\n")
}

func (r reporter) Output(text string) { r.s.output("console", text+"\n") }

func event(name string) godap.Event {
	return godap.Event{ProtocolMessage: godap.ProtocolMessage{Type: "event"}, Event: name}
}

func response(req *Message) godap.Response {
	return godap.Response{ProtocolMessage: godap.ProtocolMessage{Type: "response"}, RequestSeq: req.Seq, Success: true, Command: req.Command}
}

func errorResponse(req *Message, id int, msg string, showUser bool) *godap.ErrorResponse {
	r := response(req)
	r.Success = false
	r.Message = msg
	return &godap.ErrorResponse{Response: r, Body: godap.ErrorResponseBody{Error: &godap.ErrorMessage{Id: id, Format: msg, ShowUser: showUser}}}
}
