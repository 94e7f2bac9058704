package dap_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/kdap/kdap/dap"
)

// FuzzReader: no input makes the reader panic, loop, or return more than it
// was given; what it returns re-frames to something it reads back equally.
// Seeds: testdata/fuzz/FuzzReader.
func FuzzReader(f *testing.F) {
	f.Add([]byte("Content-Length: 2\r\n\r\n{}"))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := dap.NewReader(bytes.NewReader(in))
		for i := 0; ; i++ {
			msg, err := r.Read()
			if err != nil {
				return
			}
			if len(msg) > len(in) {
				t.Fatalf("message of %d bytes from %d bytes of input", len(msg), len(in))
			}
			var buf bytes.Buffer
			dap.NewWriter(&buf).Write(msg)
			again, err := dap.NewReader(&buf).Read()
			if err != nil || !bytes.Equal(again, msg) {
				t.Fatalf("re-framed message reads back as %q, %v; want %q", again, err, msg)
			}
			if i > len(in) {
				t.Fatal("more messages than input bytes")
			}
		}
	})
}

// FuzzServe feeds arbitrary bytes from the IDE into a session (attached to
// the in-process debugger when the input asks for it): the session must not
// panic, must end when the IDE's stream ends, and must leave no goroutine
// behind (checked by goleak in TestMain). Seeds: testdata/fuzz/FuzzServe.
func FuzzServe(f *testing.F) {
	f.Add([]byte("Content-Length: 60\r\n\r\n{\"seq\":1,\"type\":\"request\",\"command\":\"attach\",\"arguments\":{}}"))
	f.Fuzz(func(t *testing.T, in []byte) {
		clientSide, kdapSide := net.Pipe()
		done := make(chan error, 1)
		go func() { done <- dap.Serve(context.Background(), kdapSide, &attacher{}, dap.Options{}) }()
		go io.Copy(io.Discard, clientSide) // whatever kdap answers
		clientSide.SetWriteDeadline(time.Now().Add(5 * time.Second))
		clientSide.Write(in)
		clientSide.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Serve did not end after the IDE's stream ended")
		}
	})
}

// FuzzEnvelope: Parse accepts exactly the JSON objects encoding/json does
// (its one-pass scanner replaced json.Unmarshal), and Renumber keeps a
// message JSON, with the new numbers and the same type and body (byte for
// byte but for white space, which only a message lacking seq or
// request_seq loses).
// Seeds: testdata/fuzz/FuzzEnvelope.
func FuzzEnvelope(f *testing.F) {
	f.Add([]byte(`{"seq":7,"type":"response","request_seq":3,"success":true,"command":"threads","body":{"threads":[{"id":1,"name":"m\u00e9"}]}}`))
	f.Add([]byte(`{"seq":1,"type":"event","event":"output","body":{"output":"a\"b\\c\n"}}`))
	f.Add([]byte(` {"type":"request","seq":-1.5e3,"arguments":[null,true,false,{}]} `))
	f.Fuzz(func(t *testing.T, in []byte) {
		m, err := dap.Parse(in)
		var obj map[string]json.RawMessage
		if err == nil && json.Unmarshal(in, &obj) != nil {
			t.Fatalf("Parse accepted %q, which is not a JSON object", in)
		}
		if err != nil {
			if json.Valid(in) && bytes.HasPrefix(bytes.TrimLeft(in, " \t\r\n"), []byte("{")) && strings.Contains(err.Error(), "not JSON") {
				t.Fatalf("Parse refused %q, a JSON object: %v", in, err)
			}
			return
		}
		raw, err := m.Renumber(5, 6)
		if err != nil {
			t.Fatalf("Renumber(%q): %v", in, err)
		}
		again, err := dap.Parse(raw)
		if err != nil {
			t.Fatalf("renumbered %q is %q, which Parse refuses: %v", in, raw, err)
		}
		if again.Seq != 5 || (m.Type == "response" && again.RequestSeq != 6) || again.Type != m.Type || !bytes.Equal(compact(again.Body()), compact(m.Body())) {
			t.Fatalf("renumbered %q is %q", in, raw)
		}
	})
}

// compact is b without insignificant white space (b if it is not JSON).
func compact(b []byte) []byte {
	var out bytes.Buffer
	if json.Compact(&out, b) != nil {
		return b
	}
	return out.Bytes()
}
