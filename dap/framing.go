// Package dap speaks the Debug Adapter Protocol for kdap: message framing
// with a size limit, the few fields of a message the proxy reads or rewrites,
// and the proxy session between an IDE and a debugger. It knows nothing of
// Kubernetes: the session gets its debugger connection from an Attacher.
package dap

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
)

// MaxMessageSize bounds the content of one message. A peer announcing more
// is broken or hostile; reading it would exhaust memory.
const MaxMessageSize = 64 << 20

// ProtocolError is a message that does not follow DAP's base protocol
// (a Content-Length header, a blank line, then that many bytes of JSON).
type ProtocolError struct {
	Reason string
	Err    error // a sentinel such as ErrTooLarge, or nil
}

func (e *ProtocolError) Error() string { return "malformed DAP message: " + e.Reason }

// Unwrap returns the sentinel behind the error, if any.
func (e *ProtocolError) Unwrap() error { return e.Err }

// ErrTooLarge is wrapped by the error for a message over MaxMessageSize.
var ErrTooLarge = errors.New("message too large")

// Reader reads framed messages from a stream.
type Reader struct {
	r   *bufio.Reader
	max int
}

// NewReader returns a Reader with the default size limit. Its buffer holds
// headers and small messages; a larger body is read past it, straight into
// the message (kdap holds two Readers a session: 16 KiB, not 64, is 4.8 MB
// less at fifty sessions).
func NewReader(r io.Reader) *Reader {
	return &Reader{r: bufio.NewReaderSize(r, 16<<10), max: MaxMessageSize}
}

// maxHeaderLine bounds one header line, so a peer sending no newline cannot
// make the reader buffer without end.
const maxHeaderLine = 1024

// Read returns the content of the next message. Header fields other than
// Content-Length are ignored, as the base protocol allows. At the end of the
// stream it returns io.EOF; a stream cut inside a message gives
// io.ErrUnexpectedEOF.
func (r *Reader) Read() ([]byte, error) {
	length := -1
	sawHeader := false
	for {
		line, err := r.readLine()
		if err != nil {
			if err == io.EOF && sawHeader {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if line == "" {
			if !sawHeader {
				continue // tolerate blank lines between messages
			}
			break
		}
		sawHeader = true
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			return nil, &ProtocolError{Reason: fmt.Sprintf("header line %q has no colon", truncate(line))}
		}
		if !strings.EqualFold(strings.TrimSpace(name), "Content-Length") {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSpace(value))
		if err != nil || n < 0 {
			return nil, &ProtocolError{Reason: fmt.Sprintf("Content-Length %q is not a length", truncate(value))}
		}
		length = n
	}
	if length < 0 {
		return nil, &ProtocolError{Reason: "no Content-Length header"}
	}
	if length > r.max {
		return nil, &ProtocolError{Reason: fmt.Sprintf("%d bytes announced, limit %d", length, r.max), Err: ErrTooLarge}
	}
	content := make([]byte, length)
	if _, err := io.ReadFull(r.r, content); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return content, nil
}

// readLine reads one CRLF- (or LF-) terminated header line without its end.
func (r *Reader) readLine() (string, error) {
	var buf []byte
	for {
		chunk, err := r.r.ReadSlice('\n')
		buf = append(buf, chunk...)
		if len(buf) > maxHeaderLine {
			return "", &ProtocolError{Reason: fmt.Sprintf("header line longer than %d bytes", maxHeaderLine)}
		}
		if err == nil {
			break
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF && len(buf) > 0 {
			return "", io.ErrUnexpectedEOF
		}
		return "", err
	}
	return string(bytes.TrimRight(buf, "\r\n")), nil
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// Writer writes framed messages; it is safe for concurrent use, so every
// message on a connection goes through one Writer and frames never interleave.
type Writer struct {
	mu sync.Mutex
	w  io.Writer
}

// NewWriter returns a Writer on w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Write frames content and writes it in one call.
func (w *Writer) Write(content []byte) error {
	msg := make([]byte, 0, len(content)+32)
	msg = append(msg, "Content-Length: "...)
	msg = strconv.AppendInt(msg, int64(len(content)), 10)
	msg = append(msg, "\r\n\r\n"...)
	msg = append(msg, content...)
	w.mu.Lock()
	defer w.mu.Unlock()
	_, err := w.w.Write(msg)
	return err
}
