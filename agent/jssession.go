package agent

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/kdap/kdap/dap"
	"github.com/kdap/kdap/runtimes"
)

// jsSession gives one DAP client one session on js-debug. js-debug splits
// an attach in two: the parent session attaches to the inspector and asks,
// with a startDebugging reverse request, for a child session — a second
// connection — that does the debugging (breakpoints bind, stops arrive only
// there). jsSession holds both connections and joins them: the client's
// initialize and attach go to the parent; startDebugging is answered here
// and the child opened; from the child's first "initialized" event on, the
// client talks to the child. Every client — VS Code, nvim-dap 0.6, a plain
// DAP client — sees one session, and a dropped client can never leave the
// child behind holding the target paused (js-debug would keep it paused).
//
// It also maps source paths: js-debug reads the target's files through
// /proc/PID/root, so a path in the client's folder (localRoot) is that
// path under /proc/PID/root<remoteRoot> for js-debug, and back.
//
// Goroutines: run is the loop and owns all state; one reader per
// connection feeds it; each connection has one writer (a queue drained by
// its own goroutine), so the loop never blocks on a slow peer. run waits
// for all of them before it returns.
type jsSession struct {
	client net.Conn // the agent's end of the client's connection
	server string   // js-debug's DAP server
	relay  string   // the inspector, through the agent's relay
	target *runtimes.Target
	logf   func(string, ...any)

	in               chan jsIncoming
	done             chan struct{}
	wg               sync.WaitGroup
	peers            map[string]*jsPeer // "client", "parent", "child"
	initArgs         json.RawMessage    // the client's initialize arguments
	attachSeq        int                // the client's attach request
	attachAnswered   bool
	childReady       bool                      // the child sent "initialized": the client's requests go to it
	childAttached    bool                      // the child answered its attach: breakpoints set now verify at once
	queued           []*dap.Message            // the client's requests before childReady
	held             []*dap.Message            // its breakpoint requests before childAttached
	toClient         map[string]map[int]int    // peer → its seq of a request relayed from the client → the client's seq
	reverse          map[int]reverseRef        // our seq towards the client of a reverse request → where it came from
	internal         map[string]map[int]string // peer → seq of our own request → what it was
	ideRoot, podRoot string
	disconnecting    bool
	terminatedSent   bool
}

// reverseRef is a reverse request relayed to the client.
type reverseRef struct {
	peer string
	seq  int
}

type jsIncoming struct {
	from string
	msg  *dap.Message
	err  error
}

// jsStartTimeout bounds the wait for js-debug's child session after the
// parent attached.
const jsStartTimeout = 15 * time.Second

func (s *jsSession) run() {
	s.in = make(chan jsIncoming)
	s.done = make(chan struct{})
	s.peers = map[string]*jsPeer{}
	s.toClient = map[string]map[int]int{"parent": {}, "child": {}}
	s.internal = map[string]map[int]string{"parent": {}, "child": {}}
	s.reverse = map[int]reverseRef{}
	s.addPeer("client", s.client)
	defer s.shutdown()
	var startTimer <-chan time.Time
	for {
		select {
		case in := <-s.in:
			if in.err != nil {
				s.ended(in.from, in.err)
				return
			}
			if !s.handle(in.from, in.msg) {
				return
			}
			if s.peers["parent"] != nil && s.peers["child"] == nil && startTimer == nil && s.attachSeq != 0 {
				startTimer = time.After(jsStartTimeout)
			}
		case <-startTimer:
			if s.peers["child"] == nil {
				s.failAttach(fmt.Sprintf("js-debug attached to the target's inspector but opened no debug session within %s", jsStartTimeout))
				return
			}
		}
	}
}

// handle routes one message; false ends the session.
func (s *jsSession) handle(from string, m *dap.Message) bool {
	switch from {
	case "client":
		return s.fromClient(m)
	case "parent":
		return s.fromParent(m)
	default:
		return s.fromChild(m)
	}
}

func (s *jsSession) fromClient(m *dap.Message) bool {
	switch {
	case m.Type == "response":
		if ref, ok := s.reverse[m.RequestSeq]; ok && s.peers[ref.peer] != nil {
			delete(s.reverse, m.RequestSeq)
			s.peers[ref.peer].relay(m, ref.seq, s.toPod)
		}
		return true
	case m.Type != "request":
		return true
	case m.Command == "initialize" && s.peers["parent"] == nil:
		s.initArgs = m.Arguments()
		conn, err := dialServer(s.server, 5*time.Second)
		if err != nil {
			s.peers["client"].send(errorResponse(m, fmt.Sprintf("cannot reach js-debug at %s: %v", s.server, err)))
			return false
		}
		p := s.addPeer("parent", conn)
		seq := p.sendRequest("initialize", s.childInitArgs())
		s.toClient["parent"][seq] = m.Seq
		return true
	case m.Command == "attach" && s.attachSeq == 0 && s.peers["parent"] != nil:
		s.attachSeq = m.Seq
		args, err := s.jsAttachArguments(m.Arguments())
		if err != nil {
			s.failAttach(err.Error())
			return false
		}
		seq := s.peers["parent"].sendRequest("attach", args)
		s.internal["parent"][seq] = "attach"
		return true
	}
	if !s.childReady {
		if m.Command == "disconnect" || m.Command == "terminate" {
			s.peers["client"].send(okResponse(m))
			return false
		}
		s.queued = append(s.queued, m)
		return true
	}
	if m.Command == "configurationDone" {
		// The child had its configurationDone when it said initialized.
		s.peers["client"].send(okResponse(m))
		return true
	}
	if !s.childAttached && breakpointRequests[m.Command] {
		s.held = append(s.held, m)
		return true
	}
	if m.Command == "disconnect" {
		s.disconnecting = true
	}
	s.toChild(m)
	return true
}

// breakpointRequests are held until js-debug's child session has attached:
// js-debug's standalone server answers them earlier as provisional and,
// measured with 1.112, never reports them verified (they bind all the same);
// set after the attach they come back verified. The child's attach waits for
// configurationDone, and clients (VS Code) send configurationDone only once
// their breakpoints are answered, so the child gets its configurationDone
// from jsSession at once and the client's is answered here.
var breakpointRequests = map[string]bool{
	"setBreakpoints": true, "setFunctionBreakpoints": true, "setExceptionBreakpoints": true,
	"setDataBreakpoints": true, "setInstructionBreakpoints": true,
}

// toChild relays a request of the client to the child session.
func (s *jsSession) toChild(m *dap.Message) {
	s.toClient["child"][s.peers["child"].relay(m, 0, s.toPod)] = m.Seq
}

func (s *jsSession) fromParent(m *dap.Message) bool {
	switch m.Type {
	case "response":
		if cseq, ok := s.toClient["parent"][m.RequestSeq]; ok { // initialize
			delete(s.toClient["parent"], m.RequestSeq)
			s.peers["client"].relay(m, cseq, s.toIDE)
			return true
		}
		what := s.internal["parent"][m.RequestSeq]
		delete(s.internal["parent"], m.RequestSeq)
		if what == "attach" && !m.Success {
			s.failAttach("js-debug could not attach to the target's inspector: " + m.ErrorText())
			return false
		}
	case "event":
		switch m.Event {
		case "initialized":
			seq := s.peers["parent"].sendRequest("configurationDone", nil)
			s.internal["parent"][seq] = "configurationDone"
		case "output":
			if !bytes.Contains(m.Raw, []byte(`"telemetry"`)) {
				s.peers["client"].relay(m, 0, s.toIDE)
			}
		case "terminated":
			if !s.attachAnswered {
				s.failAttach("js-debug ended the session while attaching (is the target still running?)")
				return false
			}
			s.sendTerminated()
		}
	case "request":
		if m.Command != "startDebugging" {
			s.peers["parent"].send(map[string]any{"type": "response", "request_seq": m.Seq, "command": m.Command, "success": false,
				"message": "kdap relays no reverse requests of js-debug's parent session"})
			return true
		}
		if s.peers["child"] != nil {
			s.peers["parent"].send(map[string]any{"type": "response", "request_seq": m.Seq, "command": m.Command, "success": false,
				"message": "kdap debugs the target's main thread in one session"})
			return true
		}
		var req struct {
			Arguments struct {
				Configuration json.RawMessage `json:"configuration"`
			} `json:"arguments"`
		}
		json.Unmarshal(m.Raw, &req)
		s.peers["parent"].send(map[string]any{"type": "response", "request_seq": m.Seq, "command": m.Command, "success": true})
		conn, err := dialServer(s.server, 5*time.Second)
		if err != nil {
			s.failAttach(fmt.Sprintf("cannot open js-debug's session for the target: %v", err))
			return false
		}
		c := s.addPeer("child", conn)
		s.internal["child"][c.sendRequest("initialize", s.childInitArgs())] = "initialize"
		s.internal["child"][c.sendRequest("attach", req.Arguments.Configuration)] = "attach"
	}
	return true
}

func (s *jsSession) fromChild(m *dap.Message) bool {
	switch m.Type {
	case "response":
		if what, ok := s.internal["child"][m.RequestSeq]; ok {
			delete(s.internal["child"], m.RequestSeq)
			if what == "attach" {
				if !m.Success {
					s.failAttach("js-debug could not debug the target: " + m.ErrorText())
					return false
				}
				s.attachAnswered, s.childAttached = true, true
				for _, h := range s.held {
					s.toChild(h)
				}
				s.held = nil
				s.peers["client"].send(map[string]any{"type": "response", "request_seq": s.attachSeq, "command": "attach", "success": true})
			}
			return true
		}
		cseq, ok := s.toClient["child"][m.RequestSeq]
		if !ok {
			return true
		}
		delete(s.toClient["child"], m.RequestSeq)
		s.peers["client"].relay(m, cseq, s.toIDE)
		return !(m.Command == "disconnect" && s.disconnecting)
	case "event":
		switch m.Event {
		case "initialized":
			if s.childReady {
				return true // js-debug sends it again once attached; the client configured already
			}
			s.childReady = true
			s.internal["child"][s.peers["child"].sendRequest("configurationDone", nil)] = "configurationDone"
			s.peers["client"].relay(m, 0, nil)
			queued := s.queued
			s.queued = nil
			for _, q := range queued {
				s.fromClient(q)
			}
			return true
		case "terminated":
			s.sendTerminated()
			return true
		case "output":
			if bytes.Contains(m.Raw, []byte(`"telemetry"`)) {
				return true
			}
		}
		s.peers["client"].relay(m, 0, s.toIDE)
	case "request": // reverse request of the child
		seq := s.peers["client"].relay(m, 0, s.toIDE)
		s.reverse[seq] = reverseRef{"child", m.Seq}
	}
	return true
}

// ended handles the end of a connection: the client's (the session is
// over) or one of js-debug's (the client is told the session ended).
func (s *jsSession) ended(from string, err error) {
	if from != "client" {
		s.logf("js-debug closed its %s session (%v)", from, err)
		if !s.attachAnswered && s.attachSeq != 0 {
			s.failAttach(fmt.Sprintf("js-debug closed the %s session while attaching (%v)", from, err))
		}
		s.sendTerminated()
	}
}

func (s *jsSession) sendTerminated() {
	if !s.terminatedSent && s.attachAnswered {
		s.terminatedSent = true
		s.peers["client"].send(map[string]any{"type": "event", "event": "terminated"})
	}
}

func (s *jsSession) failAttach(msg string) {
	if s.attachSeq != 0 && !s.attachAnswered {
		s.attachAnswered = true
		s.peers["client"].send(map[string]any{"type": "response", "request_seq": s.attachSeq, "command": "attach", "success": false, "message": msg,
			"body": map[string]any{"error": map[string]any{"id": 1, "format": msg, "showUser": true}}})
	}
}

// shutdown lets js-debug go of the target — the child disconnects, the
// parent terminates (which resumes it) — then closes every connection and
// waits for the session's goroutines.
func (s *jsSession) shutdown() {
	if c := s.peers["child"]; c != nil && !s.disconnecting {
		c.sendRequest("disconnect", map[string]any{})
	}
	if p := s.peers["parent"]; p != nil {
		p.sendRequest("terminate", map[string]any{})
	}
	s.awaitParentEnd(time.Second)
	for _, name := range []string{"child", "parent", "client"} {
		if p := s.peers[name]; p != nil {
			p.close(2 * time.Second)
		}
	}
	close(s.done)
	s.wg.Wait()
}

// awaitParentEnd waits for js-debug to answer the parent's terminate (or
// end the session), so that the target has resumed before the
// connections close; it drains other messages meanwhile.
func (s *jsSession) awaitParentEnd(limit time.Duration) {
	if s.peers["parent"] == nil {
		return
	}
	deadline := time.After(limit)
	for {
		select {
		case in := <-s.in:
			if in.err != nil && in.from == "parent" {
				return
			}
			if in.msg != nil && in.from == "parent" && (in.msg.Type == "response" && in.msg.Command == "terminate" || in.msg.Type == "event" && in.msg.Event == "terminated") {
				return
			}
		case <-deadline:
			return
		}
	}
}

// childInitArgs are the client's initialize arguments, saying that this
// side answers startDebugging (it does, for the client).
func (s *jsSession) childInitArgs() json.RawMessage {
	var args map[string]any
	json.Unmarshal(s.initArgs, &args)
	if args == nil {
		args = map[string]any{"adapterID": "pwa-node", "linesStartAt1": true, "columnsStartAt1": true, "pathFormat": "path"}
	}
	args["supportsStartDebuggingRequest"] = true
	b, _ := json.Marshal(args)
	return b
}

// jsAttachArguments turns the attach arguments kdap sends (the user's
// js-debug options, localRoot: the client's folder, remoteRoot: the same
// folder in the target) into js-debug's attach to the inspector relay.
func (s *jsSession) jsAttachArguments(raw json.RawMessage) (json.RawMessage, error) {
	args := map[string]any{}
	if len(raw) > 0 && string(raw) != "null" {
		if err := json.Unmarshal(raw, &args); err != nil {
			return nil, fmt.Errorf("attach arguments are not a JSON object: %w", err)
		}
	}
	remote, _ := args["remoteRoot"].(string)
	if remote == "" {
		remote = s.target.Root
	}
	if remote == "" {
		remote = "/"
	}
	s.podRoot = path.Join(fmt.Sprintf("/proc/%d/root", s.target.PID), remote)
	s.ideRoot, _ = args["localRoot"].(string)
	if s.ideRoot == "" {
		s.ideRoot = remote // no local folder: the client sees the container's paths
	}
	host, port, err := net.SplitHostPort(s.relay)
	if err != nil {
		return nil, err
	}
	for _, k := range []string{"localRoot", "remoteRoot", "address", "port", "processId", "websocketAddress", "request", "type", "restart", "continueOnAttach"} {
		delete(args, k)
	}
	rewriteStrings(args, s.ideRoot, s.podRoot) // outFiles, skipFiles, … name the client's folder
	args["type"] = "pwa-node"
	args["request"] = "attach"
	args["name"] = "kdap"
	args["address"] = host
	args["port"] = jsonNumber(port)
	args["restart"] = false
	args["localRoot"] = s.podRoot
	args["remoteRoot"] = remote
	if _, ok := args["cwd"]; !ok {
		args["cwd"] = s.podRoot
	}
	if _, ok := args["outFiles"]; !ok {
		args["outFiles"] = []string{s.podRoot + "/**/*.(m|c|)js", "!**/node_modules/**"}
	}
	if _, ok := args["resolveSourceMapLocations"]; !ok {
		args["resolveSourceMapLocations"] = []string{s.podRoot + "/**", "!**/node_modules/**"}
	}
	return json.Marshal(args)
}

func jsonNumber(s string) json.Number { return json.Number(s) }

// toPod rewrites the client's paths to js-debug's; toIDE the reverse.
func (s *jsSession) toPod(raw []byte) []byte { return rewritePaths(raw, s.ideRoot, s.podRoot) }
func (s *jsSession) toIDE(raw []byte) []byte { return rewritePaths(raw, s.podRoot, s.ideRoot) }

// rewritePaths replaces the prefix from with to in every "path" value of
// a message — the path of a DAP Source, wherever it appears — and in the
// name of such a Source (js-debug names sources by their path).
func rewritePaths(raw []byte, from, to string) []byte {
	if from == "" || from == to || !bytes.Contains(raw, []byte(from)) {
		return raw
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if dec.Decode(&v) != nil {
		return raw
	}
	if !rewritePathKeys(v, from, to) {
		return raw
	}
	out, err := json.Marshal(v)
	if err != nil {
		return raw
	}
	return out
}

func rewritePathKeys(v any, from, to string) bool {
	changed := false
	switch t := v.(type) {
	case map[string]any:
		_, isSource := t["path"]
		for k, e := range t {
			if p, ok := e.(string); ok && (k == "path" || k == "name" && isSource) {
				if np, ok := replacePrefix(p, from, to); ok {
					t[k] = np
					changed = true
				}
				continue
			}
			changed = rewritePathKeys(e, from, to) || changed
		}
	case []any:
		for _, e := range t {
			changed = rewritePathKeys(e, from, to) || changed
		}
	}
	return changed
}

// rewriteStrings replaces the prefix from with to in every string value.
func rewriteStrings(v any, from, to string) {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			if p, ok := e.(string); ok {
				if np, ok := replacePrefix(p, from, to); ok {
					t[k] = np
				}
				continue
			}
			rewriteStrings(e, from, to)
		}
	case []any:
		for i, e := range t {
			if p, ok := e.(string); ok {
				neg := strings.HasPrefix(p, "!")
				if np, ok := replacePrefix(strings.TrimPrefix(p, "!"), from, to); ok {
					if neg {
						np = "!" + np
					}
					t[i] = np
				}
				continue
			}
			rewriteStrings(e, from, to)
		}
	}
}

func replacePrefix(p, from, to string) (string, bool) {
	if p == from {
		return to, true
	}
	if strings.HasPrefix(p, strings.TrimSuffix(from, "/")+"/") {
		return strings.TrimSuffix(to, "/") + p[len(strings.TrimSuffix(from, "/")):], true
	}
	return p, false
}

func okResponse(req *dap.Message) map[string]any {
	return map[string]any{"type": "response", "request_seq": req.Seq, "command": req.Command, "success": true}
}

func errorResponse(req *dap.Message, msg string) map[string]any {
	return map[string]any{"type": "response", "request_seq": req.Seq, "command": req.Command, "success": false, "message": msg,
		"body": map[string]any{"error": map[string]any{"id": 1, "format": msg, "showUser": true}}}
}

// addPeer starts a connection's dap.Peer, and a goroutine that hands
// what it reads to the loop, tagged with name (malformed messages are
// logged and skipped: one bad message ends nothing).
func (s *jsSession) addPeer(name string, conn net.Conn) *jsPeer {
	p := &jsPeer{dap.NewPeer(name, quickAckConn{conn}, nil, s.done, &s.wg)}
	s.peers[name] = p
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			var in dap.Incoming
			select {
			case in = <-p.In():
			case <-s.done:
				return
			}
			if in.Bad != nil {
				s.logf("ignored a message from the %s: %v", name, in.Bad)
				continue
			}
			select {
			case s.in <- jsIncoming{from: name, msg: in.Msg, err: in.Err}:
			case <-s.done:
				return
			}
			if in.Err != nil {
				return
			}
		}
	}()
	return p
}

// jsPeer is one connection of a jsSession. A failed write ends the
// connection, which its reader reports, so the seqs are all callers use.
type jsPeer struct{ *dap.Peer }

func (p *jsPeer) relay(m *dap.Message, requestSeq int, rewrite func([]byte) []byte) int {
	seq, _ := p.Relay(m, requestSeq, rewrite)
	return seq
}

func (p *jsPeer) send(msg map[string]any) int {
	seq, _ := p.Send(msg)
	return seq
}

func (p *jsPeer) sendRequest(command string, args any) int {
	seq, _ := p.Request(command, args)
	return seq
}

func (p *jsPeer) close(grace time.Duration) { p.Close(grace) }
