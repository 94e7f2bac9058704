package jdwp

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"
)

// RefusedError is the agent's reason for refusing a JDWP session: instead
// of the handshake it sends a line saying why.
type RefusedError struct{ Reason string }

func (e *RefusedError) Error() string { return e.Reason }

// Relay relays one JDWP session between a client that connected to kdap
// (IntelliJ, jdb) and kdap's agent, adding a heartbeat every `every`
// between the client's packets so that the agent can tell a quiet session
// from a client gone silent. It returns when either side ends, with both
// closed; a refusal by the agent is a *RefusedError (the client then sees
// its connection close during the handshake).
func Relay(client, agent net.Conn, every time.Duration) error {
	defer client.Close()
	defer agent.Close()
	if err := ReadHandshake(client); err != nil {
		return err
	}
	if _, err := io.WriteString(agent, Handshake); err != nil {
		return err
	}
	fromAgent := bufio.NewReader(agent)
	got := make([]byte, len(Handshake))
	if _, err := io.ReadFull(fromAgent, got); err != nil {
		return fmt.Errorf("the agent closed the connection during the JDWP handshake: %w", err)
	}
	if string(got) != Handshake {
		agent.SetReadDeadline(time.Now().Add(2 * time.Second))
		rest, _ := fromAgent.ReadString('\n')
		return &RefusedError{Reason: strings.TrimSpace(strings.TrimPrefix(string(got)+rest, "kdap: "))}
	}
	if _, err := io.WriteString(client, Handshake); err != nil {
		return err
	}

	var mu sync.Mutex // one writer to the agent at a time: packets stay whole
	write := func(p Packet) error {
		mu.Lock()
		defer mu.Unlock()
		_, err := agent.Write(p)
		return err
	}
	done := make(chan struct{})
	var once sync.Once
	end := func() {
		once.Do(func() {
			close(done)
			client.Close()
			agent.Close()
		})
	}
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { // heartbeats
		defer wg.Done()
		tick := time.NewTicker(every)
		defer tick.Stop()
		for n := uint32(0); ; n++ {
			if write(Heartbeat(n)) != nil {
				end()
				return
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	go func() { // client → agent
		defer wg.Done()
		defer end()
		r := bufio.NewReader(client)
		for {
			p, err := ReadPacket(r)
			if err != nil || write(p) != nil {
				return
			}
		}
	}()
	go func() { // agent → client
		defer wg.Done()
		defer end()
		io.Copy(client, fromAgent)
	}()
	wg.Wait()
	return nil
}
