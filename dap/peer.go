package dap

import (
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"
)

// Peer is one side of a relay: a DAP connection with its own seq numbers.
// It owns two goroutines: a reader that hands messages to In, and the
// connection's only writer, fed by a queue so that whoever relays never
// blocks on a peer that is not reading (two peers blocked writing to each
// other would otherwise deadlock the relay). The kdap session uses it for
// the IDE and the debugger; the agent's js-debug session for its three
// connections.
type Peer struct {
	name  string
	conn  io.ReadWriteCloser
	in    chan Incoming // filled by the reader goroutine
	trace io.Writer

	mu      sync.Mutex // orders seq allocation with queueing
	seq     int        // last seq used towards this peer
	queue   [][]byte
	closing bool
	wake    chan struct{} // capacity 1: the queue has something
	flush   chan struct{} // closed by Close: write what is queued, then stop
	stopped chan struct{} // closed when the writer goroutine ends
	werr    error         // first write error; later sends fail with it
}

// Incoming is what a Peer's reader hands over: a message, a message that
// is not DAP (Bad: the stream goes on), or the end of the stream (Err).
type Incoming struct {
	Msg *Message
	Bad error
	Err error
}

// NewPeer wraps conn and starts its reader and writer, counted in wg. The
// reader ends at the end of the stream or when done is closed; the writer
// when Close has written what is queued, or a write fails. trace, if set,
// gets every message both ways, marked with name.
func NewPeer(name string, conn io.ReadWriteCloser, trace io.Writer, done <-chan struct{}, wg *sync.WaitGroup) *Peer {
	p := &Peer{
		name: name, conn: conn, in: make(chan Incoming), trace: trace,
		wake: make(chan struct{}, 1), flush: make(chan struct{}), stopped: make(chan struct{}),
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		p.readLoop(done)
	}()
	go func() {
		defer wg.Done()
		p.writeLoop()
	}()
	return p
}

// In delivers what the peer sends, then one Incoming with Err.
func (p *Peer) In() <-chan Incoming { return p.in }

func (p *Peer) readLoop(done <-chan struct{}) {
	r := NewReader(p.conn)
	for {
		raw, err := r.Read()
		var in Incoming
		switch {
		case err != nil:
			in.Err = err
		default:
			p.traceMsg("←", raw)
			in.Msg, in.Bad = Parse(raw)
		}
		select {
		case p.in <- in:
		case <-done:
			return
		}
		if err != nil {
			return
		}
	}
}

func (p *Peer) writeLoop() {
	defer close(p.stopped)
	w := NewWriter(p.conn)
	for {
		flushing := false
		select {
		case <-p.wake:
		case <-p.flush:
			flushing = true
		}
		p.mu.Lock()
		batch := p.queue
		p.queue = nil
		p.mu.Unlock()
		for _, raw := range batch {
			if err := w.Write(raw); err != nil {
				p.mu.Lock()
				p.werr = fmt.Errorf("writing to the %s: %w", p.name, err)
				p.mu.Unlock()
				p.conn.Close() // the reader sees the end; the owner reacts
				return
			}
		}
		if flushing {
			return
		}
	}
}

// Close writes what is queued (waiting at most grace for a peer that does
// not read) and closes the connection. It is idempotent.
func (p *Peer) Close(grace time.Duration) {
	p.mu.Lock()
	if !p.closing {
		p.closing = true
		close(p.flush)
	}
	p.mu.Unlock()
	select {
	case <-p.stopped:
	case <-time.After(grace):
	}
	p.conn.Close()
}

// Relay queues m with a fresh seq (and requestSeq for a response), then
// rewritten by rewrite if it is set, and returns the seq used.
func (p *Peer) Relay(m *Message, requestSeq int, rewrite func([]byte) []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.werr != nil {
		return 0, p.werr
	}
	p.seq++
	raw, err := m.Renumber(p.seq, requestSeq)
	if err != nil {
		return 0, err
	}
	if rewrite != nil {
		raw = rewrite(raw)
	}
	p.traceMsg("→", raw)
	if !p.closing {
		p.queue = append(p.queue, raw)
	}
	select {
	case p.wake <- struct{}{}:
	default:
	}
	return p.seq, nil
}

// Send marshals v (a message whose seq is set here; a response keeps its
// request_seq), queues it and returns the seq used.
func (p *Peer) Send(v any) (int, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return 0, err
	}
	m, err := Parse(raw)
	if err != nil {
		return 0, err
	}
	return p.Relay(m, m.RequestSeq, nil)
}

// Request queues a request of the caller's own and returns its seq.
func (p *Peer) Request(command string, args any) (int, error) {
	msg := map[string]any{"seq": 0, "type": "request", "command": command}
	if args != nil {
		msg["arguments"] = args
	}
	return p.Send(msg)
}

func (p *Peer) traceMsg(dir string, raw []byte) {
	if p.trace != nil {
		fmt.Fprintf(p.trace, "%s %s %s\n", p.name, dir, raw)
	}
}
