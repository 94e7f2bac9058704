package attach

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/kdap/kdap/agentapi"
	"github.com/kdap/kdap/jdwp"
	"github.com/kdap/kdap/runtimes"
)

// ServeEndpoint serves `kdap attach`'s local endpoint: it accepts clients
// on ln (IntelliJ, GoLand, jdb, a DAP client) and relays each through the
// forward to the agent — JDWP with kdap's heartbeats added, anything else
// byte for byte — until ctx is done or the forward is lost, which it
// returns as an error. note gets what the user should know of a client
// (a refused session). Every relay has ended when it returns.
func ServeEndpoint(ctx context.Context, ep *Endpoint, ln net.Listener, note func(string)) error {
	rt := runtimes.Lookup(ep.Status.Target.Runtime)
	var wg sync.WaitGroup
	var mu sync.Mutex
	open := map[net.Conn]bool{}
	stop := func() {
		ln.Close()
		mu.Lock()
		for c := range open {
			c.Close()
		}
		mu.Unlock()
	}
	go func() {
		select {
		case <-ctx.Done():
		case <-ep.Forward.Done():
		}
		stop()
	}()
	for {
		client, err := ln.Accept()
		if err != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer client.Close()
			agent, err := net.Dial("tcp", ep.Forward.Addr())
			if err != nil {
				note(fmt.Sprintf("kdap: cannot reach the debugger through the port-forward: %v", err))
				return
			}
			mu.Lock()
			open[client], open[agent] = true, true
			mu.Unlock()
			relay(rt, client, agent, note)
			mu.Lock()
			delete(open, client)
			delete(open, agent)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return nil // the forward ends with ctx
	}
	select {
	case <-ep.Forward.Done():
		return fmt.Errorf("lost the port-forward to pod %s/%s: %v; run kdap attach again", ep.Namespace, ep.Pod, ep.Forward.Err())
	default:
		return nil
	}
}

// relay relays one client to the agent, in the runtime's endpoint protocol.
func relay(rt *runtimes.Runtime, client, agent net.Conn, note func(string)) {
	if rt != nil && rt.Endpoint == runtimes.EndpointJDWP {
		err := jdwp.Relay(client, agent, agentapi.HeartbeatInterval)
		var refused *jdwp.RefusedError
		if errors.As(err, &refused) {
			note("kdap: the debugger refused a JDWP connection: " + refused.Reason)
		}
		return
	}
	done := make(chan struct{}, 2)
	go func() { io.Copy(agent, client); done <- struct{}{} }()
	go func() { io.Copy(client, agent); done <- struct{}{} }()
	<-done
	client.Close()
	agent.Close()
	<-done
}
