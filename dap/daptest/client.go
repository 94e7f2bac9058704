// Package daptest is a DAP client for tests: it sends requests and waits for
// the responses and events a test expects, failing the test with what it
// saw instead. It speaks to any DAP server: kdap, dlv, an in-process fake.
package daptest

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kdap/kdap/dap"
)

// Client is a test DAP client on one connection.
type Client struct {
	conn    io.ReadWriteCloser
	w       *dap.Writer
	in      chan *dap.Message
	readErr chan error
	Timeout time.Duration // how long Expect* wait; default 10 s

	mu       sync.Mutex
	seq      int
	seen     []string        // recent messages, for failure reports
	console  []string        // the text of every output event, in order
	requests map[string]bool // commands of the reverse requests received
}

// NewClient starts reading conn; Close ends it.
func NewClient(conn io.ReadWriteCloser) *Client {
	c := &Client{conn: conn, w: dap.NewWriter(conn), in: make(chan *dap.Message, 256), readErr: make(chan error, 1), Timeout: 10 * time.Second,
		requests: map[string]bool{}}
	go func() {
		r := dap.NewReader(conn)
		for {
			raw, err := r.Read()
			if err != nil {
				c.readErr <- err
				close(c.in)
				return
			}
			m, err := dap.Parse(raw)
			if err != nil {
				c.readErr <- err
				close(c.in)
				return
			}
			if m.Type == "request" {
				c.mu.Lock()
				c.requests[m.Command] = true
				c.mu.Unlock()
			}
			c.in <- m
		}
	}()
	return c
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Send sends a request and returns its seq. args may be nil, a Go value or
// a json.RawMessage.
func (c *Client) Send(command string, args any) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	msg := map[string]any{"seq": c.seq, "type": "request", "command": command}
	if args != nil {
		msg["arguments"] = args
	}
	raw, _ := json.Marshal(msg)
	c.w.Write(raw)
	return c.seq
}

// SendRaw writes one message as given (for responses to reverse requests
// and malformed input).
func (c *Client) SendRaw(content []byte) error { return c.w.Write(content) }

// NextSeq is the seq the next Send will use; for hand-built messages.
func (c *Client) NextSeq() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	return c.seq
}

// Expect waits for a message that match accepts, skipping others; it fails
// the test if none comes in time or the connection ends.
func (c *Client) Expect(t testing.TB, what string, match func(*dap.Message) bool) *dap.Message {
	t.Helper()
	deadline := time.After(c.Timeout)
	for {
		select {
		case m, ok := <-c.in:
			if !ok {
				t.Fatalf("waiting for %s: connection ended (%v); saw:\n%s", what, <-c.readErr, c.recent())
			}
			c.remember(m)
			if match(m) {
				return m
			}
		case <-deadline:
			t.Fatalf("no %s within %s; saw:\n%s", what, c.Timeout, c.recent())
		}
	}
}

// Poll is Expect that does not fail: the first message match accepts
// within d, skipping others, or false when none came or the connection
// ended.
func (c *Client) Poll(match func(*dap.Message) bool, within time.Duration) (*dap.Message, bool) {
	deadline := time.After(within)
	for {
		select {
		case m, ok := <-c.in:
			if !ok {
				return nil, false
			}
			c.remember(m)
			if match(m) {
				return m, true
			}
		case <-deadline:
			return nil, false
		}
	}
}

// ExpectResponse waits for the response to request seq and fails the test
// unless it succeeded.
func (c *Client) ExpectResponse(t testing.TB, seq int) *dap.Message {
	t.Helper()
	m := c.ExpectAnyResponse(t, seq)
	if !m.Success {
		t.Fatalf("%s (seq %d) failed: %s", m.Command, seq, m.ErrorText())
	}
	return m
}

// ExpectAnyResponse waits for the response to request seq, success or not.
func (c *Client) ExpectAnyResponse(t testing.TB, seq int) *dap.Message {
	t.Helper()
	return c.Expect(t, fmt.Sprintf("response to seq %d", seq), func(m *dap.Message) bool {
		return m.Type == "response" && m.RequestSeq == seq
	})
}

// ExpectResponses waits for the responses to all of seqs, in any order
// (debugpy answers attach only after configurationDone), and fails the test
// unless each succeeded.
func (c *Client) ExpectResponses(t testing.TB, seqs ...int) map[int]*dap.Message {
	t.Helper()
	got := map[int]*dap.Message{}
	for len(got) < len(seqs) {
		m := c.Expect(t, fmt.Sprintf("responses to seqs %v", seqs), func(m *dap.Message) bool {
			return m.Type == "response" && slices.Contains(seqs, m.RequestSeq) && got[m.RequestSeq] == nil
		})
		if !m.Success {
			t.Fatalf("%s (seq %d) failed: %s", m.Command, m.RequestSeq, m.ErrorText())
		}
		got[m.RequestSeq] = m
	}
	return got
}

// ExpectEvent waits for an event by name.
func (c *Client) ExpectEvent(t testing.TB, name string) *dap.Message {
	t.Helper()
	return c.Expect(t, name+" event", func(m *dap.Message) bool { return m.Type == "event" && m.Event == name })
}

// ExpectRequest waits for a reverse request by command.
func (c *Client) ExpectRequest(t testing.TB, command string) *dap.Message {
	t.Helper()
	return c.Expect(t, command+" request", func(m *dap.Message) bool { return m.Type == "request" && m.Command == command })
}

// ExpectClosed waits until the server closes the connection.
func (c *Client) ExpectClosed(t testing.TB) {
	t.Helper()
	deadline := time.After(c.Timeout)
	for {
		select {
		case m, ok := <-c.in:
			if !ok {
				return
			}
			c.remember(m)
		case <-deadline:
			t.Fatalf("connection still open after %s; saw:\n%s", c.Timeout, c.recent())
		}
	}
}

// SawRequest reports whether the server has sent a reverse request of
// this command so far.
func (c *Client) SawRequest(command string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.requests[command]
}

// Decode unmarshals a message's body into v, failing the test on error.
func Decode(t testing.TB, m *dap.Message, v any) {
	t.Helper()
	if err := json.Unmarshal(m.Body(), v); err != nil {
		t.Fatalf("decode body of %s: %v: %s", m.Command+m.Event, err, m.Raw)
	}
}

// Verified reports whether a setBreakpoints response holds breakpoints and
// every one is verified, however the debugger spaced its JSON (kdap relays
// it byte for byte).
func Verified(m *dap.Message) bool {
	var body struct {
		Breakpoints []struct {
			Verified bool `json:"verified"`
		} `json:"breakpoints"`
	}
	if json.Unmarshal(m.Body(), &body) != nil || len(body.Breakpoints) == 0 {
		return false
	}
	for _, bp := range body.Breakpoints {
		if !bp.Verified {
			return false
		}
	}
	return true
}

// Recent returns the last 20 messages the client has read, raw.
func (c *Client) Recent() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.seen...)
}

// Console is the text of every output event read so far.
func (c *Client) Console() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.console, "")
}

func (c *Client) remember(m *dap.Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seen = append(c.seen, string(m.Raw))
	if m.Type == "event" && m.Event == "output" {
		var out struct {
			Body struct {
				Output string `json:"output"`
			} `json:"body"`
		}
		json.Unmarshal(m.Raw, &out)
		c.console = append(c.console, out.Body.Output)
	}
	if len(c.seen) > 20 {
		c.seen = c.seen[1:]
	}
}

func (c *Client) recent() string {
	if len(c.seen) == 0 {
		return "  (nothing)"
	}
	return "  " + strings.Join(c.seen, "\n  ")
}
