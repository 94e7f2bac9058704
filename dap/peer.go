package dap

import (
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"
)

// peer is one side of a session: the IDE or the debugger. It owns two
// goroutines: a reader that hands messages to the session's loop, and the
// connection's only writer, fed by a queue so that the loop never blocks on
// a peer that is not reading (two peers blocked writing to each other would
// otherwise deadlock the session).
type peer struct {
	name  string
	conn  io.ReadWriteCloser
	in    chan incoming // filled by the reader goroutine, drained by the loop
	trace io.Writer

	mu      sync.Mutex // orders seq allocation with queueing
	seq     int        // last seq kdap used towards this peer
	queue   [][]byte
	wake    chan struct{} // capacity 1: the queue has something
	flush   chan struct{} // closed at shutdown: write what is queued, then stop
	stopped chan struct{} // closed when the writer goroutine ends
	werr    error         // first write error; later sends fail with it
}

// incoming is what the reader goroutine hands the loop: a message, a
// message that is not DAP (bad), or the end of the stream (err).
type incoming struct {
	msg *Message
	bad error
	err error
}

// newPeer wraps conn and starts its reader and writer goroutines. The reader
// ends when conn is closed or s.done is closed; the writer when flush is
// closed (after writing what is queued) or a write fails.
func (s *session) newPeer(name string, conn io.ReadWriteCloser) *peer {
	p := &peer{
		name: name, conn: conn, in: make(chan incoming), trace: s.opts.Trace,
		wake: make(chan struct{}, 1), flush: make(chan struct{}), stopped: make(chan struct{}),
	}
	s.peers = append(s.peers, p)
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		p.readLoop(s.done)
	}()
	go func() {
		defer s.wg.Done()
		p.writeLoop()
	}()
	return p
}

func (p *peer) readLoop(done <-chan struct{}) {
	r := NewReader(p.conn)
	for {
		raw, err := r.Read()
		var in incoming
		switch {
		case err != nil:
			in.err = err
		default:
			p.traceMsg("←", raw)
			in.msg, in.bad = Parse(raw)
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

func (p *peer) writeLoop() {
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
				p.conn.Close() // the reader sees the end; the loop reacts
				return
			}
		}
		if flushing {
			return
		}
	}
}

// close writes what is queued (waiting at most grace for a peer that does
// not read) and closes the connection.
func (p *peer) close(grace time.Duration) {
	p.mu.Lock()
	select {
	case <-p.flush:
	default:
		close(p.flush)
	}
	p.mu.Unlock()
	select {
	case <-p.stopped:
	case <-time.After(grace):
	}
	p.conn.Close()
}

// relay queues m with a fresh seq (and requestSeq for a response) and
// returns the seq used.
func (p *peer) relay(m *Message, requestSeq int) (int, error) {
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
	p.traceMsg("→", raw)
	p.queue = append(p.queue, raw)
	select {
	case p.wake <- struct{}{}:
	default:
	}
	return p.seq, nil
}

// send marshals v (a go-dap message whose seq is set here) and queues it.
func (p *peer) send(v any) error {
	_, err := p.sendSeq(v)
	return err
}

// sendSeq is send, returning the seq used.
func (p *peer) sendSeq(v any) (int, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return 0, err
	}
	m, err := Parse(raw)
	if err != nil {
		return 0, err
	}
	return p.relay(m, m.RequestSeq)
}

func (p *peer) traceMsg(dir string, raw []byte) {
	if p.trace != nil {
		fmt.Fprintf(p.trace, "%s %s %s\n", p.name, dir, raw)
	}
}
