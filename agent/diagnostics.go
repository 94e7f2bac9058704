package agent

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// diagnostician is a debugger that takes diagnostics of the target that
// stop it for at most a moment (Java's: a thread dump, a heap dump, a JFR
// recording) — also when sessions are unavailable.
type diagnostician interface {
	// diagnose takes the diagnostic kind, with the request's parameters;
	// ctx ends if the client goes away.
	diagnose(ctx context.Context, kind string, params url.Values, logf func(string, ...any)) (*diagnostic, error)
}

// diagnostic is a diagnostic's file, streamed to the client.
type diagnostic struct {
	body        io.ReadCloser
	size        int64 // -1 if unknown
	contentType string
}

// serveDiagnostic takes a diagnostic and writes it as the HTTP response;
// an error is a 4xx/5xx response whose text says why.
func (a *agent) serveDiagnostic(ctx context.Context, conn net.Conn, kind string, params url.Values) {
	d, ok := a.dbg.(diagnostician)
	if !ok {
		msg := fmt.Sprintf("kdap takes no diagnostics of %s programs yet\n", a.target.Runtime)
		writeHTTP(conn, http.StatusNotImplemented, "text/plain", strings.NewReader(msg), int64(len(msg)))
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { // the request is read: a read ends only when the client leaves
		conn.Read(make([]byte, 1))
		cancel()
	}()
	a.enter() // a diagnostic keeps the agent from its idle exit
	defer a.leave(false)
	start := time.Now()
	out, err := d.diagnose(ctx, kind, params, a.logf)
	if err != nil {
		a.logf("diagnostic %s: %v", kind, err)
		msg := err.Error() + "\n"
		writeHTTP(conn, http.StatusUnprocessableEntity, "text/plain", strings.NewReader(msg), int64(len(msg)))
		return
	}
	defer out.body.Close()
	if err := writeHTTP(conn, http.StatusOK, out.contentType, out.body, out.size); err != nil {
		a.logf("diagnostic %s: sending it: %v", kind, err)
		return
	}
	a.logf("diagnostic %s: %d bytes sent (%s)", kind, out.size, time.Since(start).Round(time.Millisecond))
}
