package agent

import (
	"bytes"
	"encoding/json"
	"io"
	"sync"
	"time"

	"github.com/kdap/kdap/agentapi"
	"github.com/kdap/kdap/dap"
)

// silenceWatch notes when a session's client last sent something; once
// the client has sent a heartbeat (kdap does, from the start; a client
// connecting without kdap does not, and is not watched), a client silent
// for agentapi.SilenceLimit is taken for gone.
type silenceWatch struct {
	mu    sync.Mutex
	last  time.Time
	armed bool
}

func newSilenceWatch() *silenceWatch { return &silenceWatch{last: time.Now()} }

// saw notes a message from the client; heartbeat arms the watch.
func (w *silenceWatch) saw(heartbeat bool) {
	w.mu.Lock()
	w.last = time.Now()
	w.armed = w.armed || heartbeat
	w.mu.Unlock()
}

func (w *silenceWatch) silent() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.armed && time.Since(w.last) > agentapi.SilenceLimit
}

// watch calls gone once the client has been silent too long, checking
// every 100 ms until done is closed.
func (w *silenceWatch) watch(done <-chan struct{}, gone func()) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case <-tick.C:
			if w.silent() {
				gone()
				return
			}
		}
	}
}

// copyDAP copies a DAP client's messages to upstream, dropping kdap's
// heartbeats; every message is noted in w.
func copyDAP(upstream io.Writer, client io.Reader, w *silenceWatch) error {
	r, out := dap.NewReader(client), dap.NewWriter(upstream)
	for {
		raw, err := r.Read()
		if err != nil {
			return err
		}
		hb := isHeartbeat(raw)
		w.saw(hb)
		if hb {
			continue
		}
		if err := out.Write(raw); err != nil {
			return err
		}
	}
}

// isHeartbeat reports whether a DAP message is kdap's heartbeat request.
func isHeartbeat(raw []byte) bool {
	if !bytes.Contains(raw, []byte(agentapi.HeartbeatCommand)) {
		return false
	}
	var m struct{ Type, Command string }
	return json.Unmarshal(raw, &m) == nil && m.Type == "request" && m.Command == agentapi.HeartbeatCommand
}
