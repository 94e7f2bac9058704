package dap

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// Message is one DAP message: the envelope fields the proxy routes by, and
// the raw JSON it relays.
type Message struct {
	Seq        int    `json:"seq"`
	Type       string `json:"type"` // "request", "response" or "event"
	Command    string `json:"command,omitempty"`
	Event      string `json:"event,omitempty"`
	RequestSeq int    `json:"request_seq,omitempty"`
	Success    bool   `json:"success,omitempty"`
	Raw        []byte `json:"-"`

	env     envelope // where the envelope fields are in Raw, once scanned
	scanned bool
}

// Parse decodes the envelope of a message. It fails only when raw is not a
// JSON object with a known "type": the proxy relays every command and event
// it does not know.
func Parse(raw []byte) (*Message, error) {
	m := &Message{Raw: raw}
	env, err := scanEnvelope(raw)
	if err == nil {
		err = decodeEnvelope(m, env)
	}
	if err != nil {
		return nil, &ProtocolError{Reason: fmt.Sprintf("content is not a DAP message: %v", err)}
	}
	m.env, m.scanned = env, true
	switch m.Type {
	case "request", "response", "event":
	default:
		return nil, &ProtocolError{Reason: fmt.Sprintf("unknown message type %q", truncate(m.Type))}
	}
	return m, nil
}

// Renumber returns the message with its seq (and, for a response, its
// request_seq) replaced; every other byte is kept.
func (m *Message) Renumber(seq, requestSeq int) ([]byte, error) {
	if !m.scanned {
		env, err := scanEnvelope(m.Raw)
		if err != nil {
			return nil, err
		}
		m.env, m.scanned = env, true
	}
	var rs *int
	if m.Type == "response" {
		rs = &requestSeq
	}
	if m.env.seq.to != 0 && (rs == nil || m.env.requestSeq.to != 0) {
		return renumbered(m.Raw, m.env, seq, rs), nil
	}
	// A field to add: rare enough (kdap's own messages have both) to build
	// the message again.
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(m.Raw, &fields); err != nil {
		return nil, err
	}
	fields["seq"] = json.RawMessage(strconv.Itoa(seq))
	if rs != nil {
		fields["request_seq"] = json.RawMessage(strconv.Itoa(requestSeq))
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false) // keep the values as they were written
	if err := enc.Encode(fields); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(out.Bytes(), []byte("\n")), nil
}

// Arguments returns the raw "arguments" of a request (nil if absent).
func (m *Message) Arguments() json.RawMessage {
	var req struct {
		Arguments json.RawMessage `json:"arguments"`
	}
	json.Unmarshal(m.Raw, &req)
	return req.Arguments
}

// Body returns the raw "body" of a response or event (nil if absent).
func (m *Message) Body() json.RawMessage {
	var msg struct {
		Body json.RawMessage `json:"body"`
	}
	json.Unmarshal(m.Raw, &msg)
	return msg.Body
}

// ErrorText is the message of a failed response: body.error.format, else the
// short "message" field.
func (m *Message) ErrorText() string {
	var resp struct {
		Message string `json:"message"`
		Body    struct {
			Error *struct {
				Format string `json:"format"`
			} `json:"error"`
		} `json:"body"`
	}
	json.Unmarshal(m.Raw, &resp)
	if resp.Body.Error != nil && resp.Body.Error.Format != "" {
		return resp.Body.Error.Format
	}
	return resp.Message
}
