package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/gorilla/websocket"
)

// cdp is a Chrome DevTools protocol session on a Node.js inspector, used
// from one goroutine: call sends a command and waits for its reply,
// handing the events in between to the caller.
//
// Goroutines: one reader, which ends when the connection closes.
type cdp struct {
	ws   *websocket.Conn
	next int
	msgs chan cdpMessage // from the reader; closed when it ends
	err  error           // why the reader ended, once msgs is closed
}

// cdpMessage is a reply (ID set) or an event (Method set).
type cdpMessage struct {
	ID     int             `json:"id"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
	Result json.RawMessage `json:"result"`
	Error  *cdpError       `json:"error"`
}

// cdpError is the inspector's error reply to a command.
type cdpError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func (e *cdpError) Error() string { return fmt.Sprintf("inspector: %s (%d)", e.Message, e.Code) }

// dialCDP opens a session on the inspector at addr (host:port): its first
// target's websocket. Every read on it is acknowledged at once, as in the
// relay, so that replies after events are not held back by Nagle.
func dialCDP(ctx context.Context, addr string) (*cdp, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/json/list", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	var targets []struct {
		WebSocketDebuggerURL string `json:"webSocketDebuggerUrl"`
	}
	err = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&targets)
	resp.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("inspector target list: %w", err)
	}
	if len(targets) == 0 || targets[0].WebSocketDebuggerURL == "" {
		return nil, errors.New("the inspector lists no target")
	}
	d := websocket.Dialer{
		HandshakeTimeout: 5 * time.Second,
		ReadBufferSize:   64 << 10,
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return quickAckConn{c}, nil
		},
	}
	ws, _, err := d.DialContext(ctx, targets[0].WebSocketDebuggerURL, nil)
	if err != nil {
		return nil, err
	}
	ws.SetReadLimit(256 << 20)
	c := &cdp{ws: ws, msgs: make(chan cdpMessage, 64)}
	go c.read()
	return c, nil
}

func (c *cdp) read() {
	defer close(c.msgs)
	for {
		var m cdpMessage
		if err := c.ws.ReadJSON(&m); err != nil {
			c.err = err
			return
		}
		c.msgs <- m
	}
}

// receive returns the next message, or an error when ctx ends or the
// connection is gone.
func (c *cdp) receive(ctx context.Context, what string) (cdpMessage, error) {
	select {
	case m, ok := <-c.msgs:
		if !ok {
			return m, fmt.Errorf("%s: %w", what, c.err)
		}
		return m, nil
	case <-ctx.Done():
		return cdpMessage{}, ctx.Err()
	}
}

// Close closes the connection; the reader ends (messages it holds are
// dropped).
func (c *cdp) Close() error {
	err := c.ws.Close()
	go func() {
		for range c.msgs {
		}
	}()
	return err
}

// call sends method with params and returns its result; events read
// before the reply go to onEvent (may be nil). The call ends at ctx's end.
func (c *cdp) call(ctx context.Context, method string, params any, onEvent func(method string, params json.RawMessage) error) (json.RawMessage, error) {
	c.next++
	id := c.next
	if params == nil {
		params = struct{}{}
	}
	if err := c.ws.WriteJSON(map[string]any{"id": id, "method": method, "params": params}); err != nil {
		return nil, err
	}
	for {
		msg, err := c.receive(ctx, method)
		if err != nil {
			return nil, err
		}
		switch {
		case msg.ID == id && msg.Error != nil:
			return nil, fmt.Errorf("%s: %w", method, msg.Error)
		case msg.ID == id:
			return msg.Result, nil
		case msg.Method != "" && onEvent != nil:
			if err := onEvent(msg.Method, msg.Params); err != nil {
				return nil, err
			}
		}
	}
}

// await waits for the event method and returns its params; other events
// go to onEvent (may be nil). It ends at ctx's end.
func (c *cdp) await(ctx context.Context, method string, onEvent func(method string, params json.RawMessage) error) (json.RawMessage, error) {
	for {
		msg, err := c.receive(ctx, "waiting for "+method)
		if err != nil {
			return nil, err
		}
		switch {
		case msg.Method == method:
			return msg.Params, nil
		case msg.Method != "" && onEvent != nil:
			if err := onEvent(msg.Method, msg.Params); err != nil {
				return nil, err
			}
		}
	}
}
