package agent

import (
	"context"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/kdap/kdap/agentapi"
	"github.com/kdap/kdap/runtimes"
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
	name        string        // suggested file name ("goroutines.txt"); "" leaves it to kdap
	pause       time.Duration // how long the target was stopped for it; 0 if not measured
}

// headers are the response's header lines beyond Content-Type and -Length.
func (d *diagnostic) headers() []string {
	var h []string
	if d.name != "" {
		h = append(h, "Content-Disposition: "+mime.FormatMediaType("attachment", map[string]string{"filename": d.name}))
	}
	if d.pause > 0 {
		h = append(h, agentapi.PauseHeader+": "+d.pause.String())
	}
	return h
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
	a.enter(nil) // a diagnostic keeps the agent from its idle exit
	defer a.leave(nil, false)
	start := time.Now()
	out, err := d.diagnose(ctx, kind, params, a.logf)
	if err != nil {
		a.logf("diagnostic %s: %v", kind, err)
		msg := err.Error() + "\n"
		writeHTTP(conn, http.StatusUnprocessableEntity, "text/plain", strings.NewReader(msg), int64(len(msg)))
		return
	}
	defer out.body.Close()
	if err := writeHTTP(conn, http.StatusOK, out.contentType, out.body, out.size, out.headers()...); err != nil {
		a.logf("diagnostic %s: sending it: %v", kind, err)
		return
	}
	a.logf("diagnostic %s: %d bytes sent (%s; target stopped %s)", kind, out.size, time.Since(start).Round(time.Millisecond), out.pause)
}

// noDiagnosticError says which diagnostics rt's targets have.
func noDiagnosticError(rt *runtimes.Runtime, kind string) error {
	var kinds []string
	for _, d := range rt.Diagnostics {
		kinds = append(kinds, d.Kind)
	}
	return fmt.Errorf("no diagnostic %q of %s programs: there are %s", kind, rt.Title, strings.Join(kinds, ", "))
}

// maxRecording bounds a recording's duration.
const maxRecording = 10 * time.Minute

// recordingDuration is a recording's duration parameter (default 30 s).
func recordingDuration(params url.Values) (time.Duration, error) {
	v := params.Get("duration")
	if v == "" {
		return 30 * time.Second, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 || d > maxRecording {
		return 0, fmt.Errorf("duration %q: give one from 1s to %s", v, maxRecording)
	}
	return d, nil
}

// roundPause is a pause for a dump's header: to the millisecond, or below
// one to the microsecond.
func roundPause(d time.Duration) time.Duration {
	if d < time.Millisecond {
		return d.Round(time.Microsecond)
	}
	return d.Round(time.Millisecond)
}
