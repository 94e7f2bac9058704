package dap

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestReader(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		want    []string
		wantErr error // checked with errors.Is; nil means io.EOF after want
		malform bool  // a *ProtocolError is expected after want
	}{
		{name: "one", in: "Content-Length: 2\r\n\r\n{}", want: []string{"{}"}},
		{name: "two back to back", in: "Content-Length: 2\r\n\r\n{}Content-Length: 3\r\n\r\n[1]", want: []string{"{}", "[1]"}},
		{name: "other headers ignored", in: "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}", want: []string{"{}"}},
		{name: "case-insensitive name, LF only", in: "content-length:2\n\n{}", want: []string{"{}"}},
		{name: "blank lines between messages", in: "\r\n\r\nContent-Length: 2\r\n\r\n{}", want: []string{"{}"}},
		{name: "empty content", in: "Content-Length: 0\r\n\r\n", want: []string{""}},
		{name: "no length", in: "Content-Type: x\r\n\r\n{}", malform: true},
		{name: "bad length", in: "Content-Length: two\r\n\r\n{}", malform: true},
		{name: "negative length", in: "Content-Length: -1\r\n\r\n", malform: true},
		{name: "no colon", in: "Content-Length 2\r\n\r\n{}", malform: true},
		{name: "huge length", in: "Content-Length: 99999999999\r\n\r\n", malform: true, wantErr: ErrTooLarge},
		{name: "endless header", in: strings.Repeat("x", 5000), malform: true},
		{name: "cut in content", in: "Content-Length: 10\r\n\r\n{}", wantErr: io.ErrUnexpectedEOF},
		{name: "cut in header", in: "Content-Length: 10\r\n", wantErr: io.ErrUnexpectedEOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReader(strings.NewReader(tc.in))
			var got []string
			var err error
			for {
				var b []byte
				if b, err = r.Read(); err != nil {
					break
				}
				got = append(got, string(b))
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("messages (-want +got):\n%s", diff)
			}
			var pe *ProtocolError
			switch {
			case tc.malform && !errors.As(err, &pe):
				t.Errorf("err = %v, want a *ProtocolError", err)
			case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
				t.Errorf("err = %v, want %v", err, tc.wantErr)
			case !tc.malform && tc.wantErr == nil && err != io.EOF:
				t.Errorf("err = %v, want io.EOF", err)
			}
		})
	}
}

func TestWriterFramesForTheReader(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	msgs := []string{`{"seq":1}`, ``, `{"x":"ünïcode"}`}
	for _, m := range msgs {
		if err := w.Write([]byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	if !strings.HasPrefix(buf.String(), "Content-Length: 9\r\n\r\n{\"seq\":1}") {
		t.Errorf("frame = %q", buf.String())
	}
	r := NewReader(&buf)
	for _, want := range msgs {
		got, err := r.Read()
		if err != nil || string(got) != want {
			t.Errorf("Read = %q, %v; want %q", got, err, want)
		}
	}
}

func TestParseAndRenumber(t *testing.T) {
	m, err := Parse([]byte(`{"seq":7,"type":"response","request_seq":3,"success":true,"command":"threads","body":{"threads":[{"id":1,"name":"main"}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	want := Message{Seq: 7, Type: "response", Command: "threads", RequestSeq: 3, Success: true}
	m2 := *m
	m2.Raw = nil
	if diff := cmp.Diff(want, m2, cmpopts.IgnoreUnexported(Message{})); diff != "" {
		t.Errorf("Parse (-want +got):\n%s", diff)
	}
	raw, err := m.Renumber(42, 9)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if got.Seq != 42 || got.RequestSeq != 9 || string(got.Body()) != `{"threads":[{"id":1,"name":"main"}]}` {
		t.Errorf("renumbered = %s", raw)
	}
	// Every byte but the numbers is kept, whichever comes first.
	m, _ = Parse([]byte(`{ "request_seq" : 3, "type":"response", "body":{"seq":1,"s":"a\"seq\":9"}, "seq": 7 }`))
	if raw, _ := m.Renumber(42, 9); string(raw) != `{ "request_seq" : 9, "type":"response", "body":{"seq":1,"s":"a\"seq\":9"}, "seq": 42 }` {
		t.Errorf("renumbered = %s", raw)
	}
	// A response without request_seq gets one.
	m, _ = Parse([]byte(`{"seq":7,"type":"response","command":"x"}`))
	if raw, _ := m.Renumber(1, 2); string(raw) != `{"command":"x","request_seq":2,"seq":1,"type":"response"}` {
		t.Errorf("renumbered = %s", raw)
	}
	for _, bad := range []string{`[]`, `{"seq":1}`, `{"type":"bogus"}`, `not json`, `{"seq":1,"type":"event","x":tru}`,
		`{"seq":1,"type":"event"} {}`, `{"seq":"1","type":"event"}`, `{"seq":1,"type":"event","x":[1,]}`, `{"seq":01,"type":"event"}`} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("Parse(%s) succeeded", bad)
		}
	}
}
