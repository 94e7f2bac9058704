// Package jdwp is the little of the Java Debug Wire Protocol kdap itself
// speaks: the handshake, packet framing, the commands the agent looks at
// (Dispose, Exit) and kdap's heartbeat. Everything else is relayed as is,
// between the JVM and a JDWP client (java-debug's JDI, IntelliJ, jdb).
package jdwp

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"time"
)

// Handshake is what both sides send first.
const Handshake = "JDWP-Handshake"

// heartbeatID is the first packet id of kdap's heartbeats: ids from here
// on, on a VirtualMachine.Version command, are kdap's, and the agent drops
// them. A JDI client counts its ids up from 1 and never gets near.
const heartbeatID = 0x7fff0000

// ShakeHands performs the handshake on a connection to a JVM (or to
// anything that answers like one) within 5 s.
func ShakeHands(c net.Conn) error {
	c.SetDeadline(time.Now().Add(5 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, Handshake); err != nil {
		return err
	}
	return ReadHandshake(c)
}

// ReadHandshake reads the other side's handshake.
func ReadHandshake(r io.Reader) error {
	b := make([]byte, len(Handshake))
	if _, err := io.ReadFull(r, b); err != nil {
		return fmt.Errorf("JDWP handshake: %w", err)
	}
	if string(b) != Handshake {
		return fmt.Errorf("JDWP handshake: got %q", b)
	}
	return nil
}

// Packet is one JDWP packet: length (4), id (4), flags (1), then a command
// set and command (2) or an error code (2), then data.
type Packet []byte

// ID is the packet's id.
func (p Packet) ID() uint32 { return binary.BigEndian.Uint32(p[4:8]) }

// IsReply reports whether the packet answers a command.
func (p Packet) IsReply() bool { return p[8]&0x80 != 0 }

// Is reports whether the packet is the command set/cmd.
func (p Packet) Is(set, cmd byte) bool { return !p.IsReply() && p[9] == set && p[10] == cmd }

// Commands the agent looks at (command set 1, VirtualMachine).
const (
	VirtualMachine = 1
	Version        = 1  // VirtualMachine.Version
	Dispose        = 6  // VirtualMachine.Dispose: the debugger detaches
	Exit           = 10 // VirtualMachine.Exit: the debugger ends the JVM
)

// ErrNotImplemented is JDWP's NOT_IMPLEMENTED error code.
const ErrNotImplemented = 99

// IsHeartbeat reports whether the packet is one of kdap's heartbeats.
func (p Packet) IsHeartbeat() bool { return p.Is(VirtualMachine, Version) && p.ID() >= heartbeatID }

// maxPacket bounds a packet's length (a heap's worth of array values is
// the largest thing JDWP carries; 64 MiB is far beyond what IDEs ask for).
const maxPacket = 64 << 20

// ReadPacket reads one packet.
func ReadPacket(r io.Reader) (Packet, error) {
	var head [11]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(head[:4])
	if n < 11 || n > maxPacket {
		return nil, fmt.Errorf("malformed JDWP packet: length %d", n)
	}
	p := make(Packet, n)
	copy(p, head[:])
	if _, err := io.ReadFull(r, p[11:]); err != nil {
		return nil, err
	}
	return p, nil
}

// Reply is an empty reply to the command id with an error code (0: none).
func Reply(id uint32, errorCode uint16) Packet {
	p := make(Packet, 11)
	binary.BigEndian.PutUint32(p[:4], 11)
	binary.BigEndian.PutUint32(p[4:8], id)
	p[8] = 0x80
	binary.BigEndian.PutUint16(p[9:11], errorCode)
	return p
}

// Heartbeat is kdap's n-th heartbeat packet: a VirtualMachine.Version
// command with an id the agent recognises and drops.
func Heartbeat(n uint32) Packet {
	p := make(Packet, 11)
	binary.BigEndian.PutUint32(p[:4], 11)
	binary.BigEndian.PutUint32(p[4:8], heartbeatID+n%0xffff)
	p[9], p[10] = VirtualMachine, Version
	return p
}
