package agent

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/kdap/kdap/agentapi"
	"github.com/kdap/kdap/agentdoor"
)

// TestTheDoorOpensOnlyToTheKey runs a real agent on a real Go target with a
// key: a plain HTTP request, a DAP client, and a client signing with
// another key are all turned away before anything reaches the debugger;
// kdap's side of the door (agentdoor.Open) with the key gets the status.
func TestTheDoorOpensOnlyToTheKey(t *testing.T) {
	if testing.Short() {
		t.Skip("builds dlv and a target")
	}
	_, pid, dlv := startTarget(t)
	pub, priv, _ := ed25519.GenerateKey(nil)
	_, other, _ := ed25519.GenerateKey(nil)
	var log syncLog
	ctx, cancel := context.WithCancel(context.Background())
	addr, done := startAgent(t, ctx, Config{TTL: time.Hour, Lazy: true, Key: pub, Getenv: settings(DlvEnv, dlv), PID: pid, Log: &log})
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
		t.Logf("agent log:\n%s", log.String())
	}()

	// Without the key: whatever the client sends first, the agent's only
	// answer is its challenge, then the connection closes.
	for name, first := range map[string]string{
		"HTTP status request": "GET / HTTP/1.0\r\n\r\n",
		"DAP initialize":      "Content-Length: 60\r\n\r\n" + `{"seq":1,"type":"request","command":"initialize","arguments":{}}`,
		"process preamble":    agentapi.ProcessLine(pid),
	} {
		got := exchange(t, addr, first)
		if !strings.HasPrefix(got, agentapi.ChallengePrefix) || strings.Count(got, "\n") != 1 {
			t.Errorf("%s: the agent answered %q, want its challenge line alone", name, got)
		}
	}
	// Another kdap's key.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := agentdoor.Open(conn, other)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(c, "GET / HTTP/1.0\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if rest, _ := io.ReadAll(c); len(rest) != 0 {
		t.Errorf("signed with another key, the client got %q", rest)
	}
	c.Close()
	if n := strings.Count(log.String(), "refused client"); n != 4 {
		t.Errorf("the agent logged %d refusals, want 4", n)
	}

	// The key.
	conn, err = net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c, err = agentdoor.Open(conn, priv)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(c, "GET / HTTP/1.0\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	for line, err := br.ReadString('\n'); strings.TrimSpace(line) != ""; line, err = br.ReadString('\n') {
		if err != nil {
			t.Fatalf("status with the key: %v", err)
		}
	}
	var st agentapi.Status
	if err := json.NewDecoder(br).Decode(&st); err != nil || st.Target == nil || st.Target.PID != pid {
		t.Fatalf("status with the key = %+v, %v", st, err)
	}
}

// exchange sends first to the agent and returns all it answers until it
// closes the connection.
func exchange(t *testing.T, addr, first string) string {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, first)
	conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	got, err := io.ReadAll(conn)
	if err != nil {
		t.Errorf("the agent kept the connection open: %v (read %q)", err, got)
	}
	return string(got)
}
