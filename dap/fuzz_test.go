package dap_test

import (
	"bytes"
	"context"
	"io"
	"net"
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
