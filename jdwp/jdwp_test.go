package jdwp

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// command is a JDWP command packet with a payload.
func command(id uint32, set, cmd byte, payload []byte) Packet {
	p := make(Packet, 11+len(payload))
	binary.BigEndian.PutUint32(p[:4], uint32(len(p)))
	binary.BigEndian.PutUint32(p[4:8], id)
	p[9], p[10] = set, cmd
	copy(p[11:], payload)
	return p
}

func TestPacketsRoundTripAndBadLengthsAreRefused(t *testing.T) {
	var buf bytes.Buffer
	buf.Write(command(7, VirtualMachine, Dispose, []byte("xyz")))
	buf.Write(Reply(7, ErrNotImplemented))
	p, err := ReadPacket(&buf)
	if err != nil || p.ID() != 7 || !p.Is(VirtualMachine, Dispose) || p.IsReply() || string(p[11:]) != "xyz" {
		t.Fatalf("command: %v %v", p, err)
	}
	r, err := ReadPacket(&buf)
	if err != nil || !r.IsReply() || r.ID() != 7 || binary.BigEndian.Uint16(r[9:11]) != ErrNotImplemented || r.Is(VirtualMachine, Dispose) {
		t.Fatalf("reply: %v %v", r, err)
	}
	for _, n := range []uint32{0, 10, maxPacket + 1} {
		head := make([]byte, 11)
		binary.BigEndian.PutUint32(head, n)
		if _, err := ReadPacket(bytes.NewReader(head)); err == nil || !strings.Contains(err.Error(), "malformed") {
			t.Errorf("length %d: %v, want malformed", n, err)
		}
	}
	if _, err := ReadPacket(bytes.NewReader(command(1, 1, 1, []byte("cut"))[:12])); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("cut packet: %v", err)
	}
}

func TestHeartbeatsAreTold(t *testing.T) {
	if !Heartbeat(0).IsHeartbeat() || !Heartbeat(1<<20).IsHeartbeat() {
		t.Error("kdap's heartbeat not recognised")
	}
	if command(1, VirtualMachine, Version, nil).IsHeartbeat() {
		t.Error("a debugger's own VirtualMachine.Version taken for a heartbeat")
	}
	if command(heartbeatID, VirtualMachine, Dispose, nil).IsHeartbeat() {
		t.Error("a Dispose taken for a heartbeat")
	}
}

// fakeAgent is the agent's end of a relay, at the one seam where a real
// agent cannot be made to reveal exactly which bytes it got: it answers
// the handshake (or refuses), then records each packet.
func fakeAgent(t *testing.T, conn net.Conn, refuse string) <-chan Packet {
	got := make(chan Packet, 1000)
	go func() {
		defer close(got)
		if err := ReadHandshake(conn); err != nil {
			return
		}
		if refuse != "" {
			io.WriteString(conn, "kdap: "+refuse+"\n")
			conn.Close()
			return
		}
		io.WriteString(conn, Handshake)
		conn.Write(Reply(1, 0)) // something for the client
		r := bufio.NewReader(conn)
		for {
			p, err := ReadPacket(r)
			if err != nil {
				return
			}
			got <- p
		}
	}()
	return got
}

func TestRelayAddsHeartbeatsBetweenWholePackets(t *testing.T) {
	ideSide, clientSide := net.Pipe()
	agentSide, agentConn := net.Pipe()
	got := fakeAgent(t, agentConn, "")
	done := make(chan error, 1)
	go func() { done <- Relay(clientSide, agentSide, 5*time.Millisecond) }()

	if err := ShakeHands(ideSide); err != nil {
		t.Fatal(err)
	}
	if p, err := ReadPacket(ideSide); err != nil || p.ID() != 1 || !p.IsReply() {
		t.Fatalf("the agent's packet to the client: %v %v", p, err)
	}
	payload := bytes.Repeat([]byte{0xab}, 100<<10) // large: written in pieces
	go func() {
		for id := uint32(1); id <= 20; id++ {
			p := command(id, 3, 1, payload)
			for i := 0; i < len(p); i += 4096 { // slowly, so heartbeats fall between pieces
				ideSide.Write(p[i:min(i+4096, len(p))])
			}
		}
	}()
	beats, next := 0, uint32(1)
	for next <= 20 {
		select {
		case p := <-got:
			switch {
			case p.IsHeartbeat():
				beats++
			case p.ID() == next && bytes.Equal(p[11:], payload):
				next++
			default:
				t.Fatalf("packet %d of the client arrived as %d bytes, id %d", next, len(p), p.ID())
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d of 20 packets arrived", next-1)
		}
	}
	if beats == 0 {
		t.Error("no heartbeat reached the agent")
	}
	ideSide.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Relay: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Relay did not return after the client left")
	}
}

func TestRelayReportsTheAgentsRefusal(t *testing.T) {
	ideSide, clientSide := net.Pipe()
	agentSide, agentConn := net.Pipe()
	fakeAgent(t, agentConn, "another debugger session is attached to this JVM")
	done := make(chan error, 1)
	go func() { done <- Relay(clientSide, agentSide, time.Second) }()
	io.WriteString(ideSide, Handshake)
	err := <-done
	var refused *RefusedError
	if !errors.As(err, &refused) || refused.Reason != "another debugger session is attached to this JVM" {
		t.Fatalf("Relay = %v, want the agent's reason", err)
	}
	if _, err := ideSide.Read(make([]byte, 1)); err == nil {
		t.Error("the client's connection is still open")
	}
}
