package agent

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/kdap/kdap/agentapi"
	"github.com/kdap/kdap/dap"
)

// heartbeat is kdap's heartbeat request, as its DAP session sends it.
func heartbeat(seq int) []byte {
	return []byte(fmt.Sprintf(`{"seq":%d,"type":"request","command":%q}`, seq, agentapi.HeartbeatCommand))
}

func TestCopyDAPDropsHeartbeatsAndArmsTheWatch(t *testing.T) {
	client, agentSide := net.Pipe()
	upstream, debugger := net.Pipe()
	w := newSilenceWatch()
	go copyDAP(upstream, agentSide, w)
	out := dap.NewWriter(client)
	go func() {
		out.Write([]byte(`{"seq":1,"type":"request","command":"initialize"}`))
		out.Write(heartbeat(2))
		out.Write([]byte(`{"seq":3,"type":"event","event":"kdap/heartbeat"}`)) // not a request: relayed
		out.Write([]byte(`{"seq":4,"type":"request","command":"threads"}`))
	}()
	r := dap.NewReader(debugger)
	var got []string
	for i := 0; i < 3; i++ {
		raw, err := r.Read()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(raw))
	}
	if strings.Contains(strings.Join(got, "\n"), `"command":"`+agentapi.HeartbeatCommand) {
		t.Errorf("a heartbeat reached the debugger: %v", got)
	}
	w.mu.Lock()
	armed := w.armed
	w.mu.Unlock()
	if !armed {
		t.Error("the watch is not armed after a heartbeat")
	}
	client.Close()
	debugger.Close()
}

func TestSilenceWatchEndsOnlyAClientThatSentAHeartbeat(t *testing.T) {
	quiet := newSilenceWatch()
	quiet.saw(false) // a client without kdap: never watched
	quiet.last = time.Now().Add(-time.Hour)
	if quiet.silent() {
		t.Error("a client that never sent a heartbeat was taken for gone")
	}
	w := newSilenceWatch()
	w.saw(true)
	if w.silent() {
		t.Error("silent right after a heartbeat")
	}
	gone := make(chan struct{})
	start := time.Now()
	go w.watch(make(chan struct{}), func() { close(gone) })
	select {
	case <-gone:
		if d := time.Since(start); d < agentapi.SilenceLimit-100*time.Millisecond || d > agentapi.SilenceLimit+500*time.Millisecond {
			t.Errorf("taken for gone after %s, want ≈ %s", d, agentapi.SilenceLimit)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a silent client was never taken for gone")
	}
}

func TestRefuseDAPAnswersTheFirstRequestAfterHeartbeats(t *testing.T) {
	client, agentSide := net.Pipe()
	defer client.Close()
	go refuseDAP(agentSide, errors.New("the JVM was started without JDWP"))
	out := dap.NewWriter(client)
	go func() {
		out.Write(heartbeat(1))
		out.Write([]byte(`{"seq":2,"type":"request","command":"initialize"}`))
	}()
	raw, err := dap.NewReader(client).Read()
	if err != nil {
		t.Fatal(err)
	}
	m, _ := dap.Parse(raw)
	if m.RequestSeq != 2 || m.Success || !strings.Contains(m.ErrorText(), "without JDWP") {
		t.Errorf("refusal: %s", raw)
	}
}
