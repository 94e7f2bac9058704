package attach

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kdap/kdap/agentapi"
	"github.com/kdap/kdap/forward"
	"github.com/kdap/kdap/inject"
	"github.com/kdap/kdap/jdwp"
	"github.com/kdap/kdap/runtimes"
)

// ServeEndpoint serves `kdap attach`'s local endpoint: it accepts clients
// on ln (IntelliJ, GoLand, jdb, a DAP client) and relays each through the
// forward to the agent — JDWP with kdap's heartbeats added, anything else
// byte for byte — until ctx is done. A lost forward ends the sessions
// relayed through it, and the next client is forwarded anew to the same
// debugger container: the endpoint stays where the IDE's configuration
// points. It returns an error once the debugger container has exited.
// note gets what the user should know (a cut session, a refused one).
// Every relay has ended, and the last forward is closed, when it returns.
func ServeEndpoint(ctx context.Context, ep *Endpoint, ln net.Listener, note func(string)) error {
	rt := runtimes.Lookup(ep.Status.Target.Runtime)
	var wg sync.WaitGroup
	var mu sync.Mutex
	open := map[net.Conn]bool{}
	stop := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
		case <-stop:
		}
		ln.Close()
		mu.Lock()
		for c := range open {
			c.Close()
		}
		mu.Unlock()
	}()
	var failed error
	for {
		client, err := ln.Accept()
		if err != nil {
			break
		}
		fwd, err := liveForward(ctx, ep, note)
		if err != nil {
			client.Close()
			var exited *inject.AgentExitedError
			if errors.As(err, &exited) {
				failed = fmt.Errorf("%v: run kdap attach again to add a new one", err)
				break
			}
			note(fmt.Sprintf("kdap: cannot forward to the debugger in pod %s/%s for the client from %s: %v", ep.Namespace, ep.Pod, client.RemoteAddr(), err))
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer client.Close()
			agent, err := net.Dial("tcp", fwd.Addr())
			if err != nil {
				note(fmt.Sprintf("kdap: cannot reach the debugger through the port-forward: %v", err))
				return
			}
			mu.Lock()
			open[client], open[agent] = true, true
			mu.Unlock()
			relayed := make(chan struct{})
			lost := make(chan struct{})
			go func() { // a lost forward ends the session it carried
				select {
				case <-fwd.Done():
					client.Close()
					agent.Close()
					close(lost)
				case <-relayed:
				}
			}()
			relay(rt, client, agent, note)
			close(relayed)
			mu.Lock()
			delete(open, client)
			delete(open, agent)
			mu.Unlock()
			select { // the relay may see the cut before the forward does
			case <-lost:
			case <-fwd.Done():
			case <-ctx.Done():
				return
			case <-time.After(2 * time.Second):
				return // the client left; the forward stays
			}
			if ctx.Err() == nil && fwd.Err() != nil { // not closed by kdap
				note(lostNote(ctx, ep, fwd, client.RemoteAddr()))
			}
		}()
	}
	close(stop)
	wg.Wait()
	ep.Forward.Close()
	if ctx.Err() != nil {
		return nil
	}
	return failed
}

// liveForward returns the endpoint's forward, forwarding anew if it was
// lost. Only ServeEndpoint's accept loop calls it.
func liveForward(ctx context.Context, ep *Endpoint, note func(string)) (*forward.Forward, error) {
	select {
	case <-ep.Forward.Done():
	default:
		return ep.Forward, nil
	}
	note(fmt.Sprintf("kdap: forwarding to debugger container %s in pod %s/%s again", ep.Agent, ep.Namespace, ep.Pod))
	if err := ep.Reforward(ctx); err != nil {
		return nil, err
	}
	return ep.Forward, nil
}

// lostNote says that the session from client ended with the forward, and
// what the cluster shows of the target now.
func lostNote(ctx context.Context, ep *Endpoint, fwd *forward.Forward, client net.Addr) string {
	return fmt.Sprintf("kdap: lost the port-forward to pod %s/%s (%v): the session from %s has ended; %s; connect again: the next connection is forwarded anew",
		ep.Namespace, ep.Pod, fwd.Err(), client, ep.TargetNote(ctx))
}

// TargetNote says what the cluster shows now of the target container and
// of the debugger container, for messages after a session: only what the
// pod's status says.
func (ep *Endpoint) TargetNote(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	pod, err := ep.Client.CoreV1().Pods(ep.Namespace).Get(ctx, ep.Pod, metav1.GetOptions{})
	if err != nil && apierrors.ReasonForError(err) == metav1.StatusReasonUnknown && ctx.Err() == nil {
		// Not the API server's answer: the connection it was asked on died
		// (often with the forward that just ended); a new one may not.
		pod, err = ep.Client.CoreV1().Pods(ep.Namespace).Get(ctx, ep.Pod, metav1.GetOptions{})
	}
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Sprintf("pod %s/%s has been deleted", ep.Namespace, ep.Pod)
	case err != nil:
		return fmt.Sprintf("the cluster cannot be asked about pod %s/%s now (%v)", ep.Namespace, ep.Pod, err)
	case pod.UID != ep.PodUID:
		return fmt.Sprintf("pod %s/%s has been replaced by a new pod of that name", ep.Namespace, ep.Pod)
	}
	target := "not reported"
	for _, st := range pod.Status.ContainerStatuses {
		if st.Name == ep.Container {
			target = describeState(st.State)
		}
	}
	agent := "not reported"
	for _, st := range pod.Status.EphemeralContainerStatuses {
		if st.Name == ep.Agent {
			agent = describeState(st.State)
		}
	}
	note := fmt.Sprintf("container %s is %s; debugger container %s is %s", ep.Container, target, ep.Agent, agent)
	if agent == "running" {
		note += " (it resumes the target once its last client is gone)"
	}
	return note
}

func describeState(st corev1.ContainerState) string {
	switch {
	case st.Running != nil:
		return "running"
	case st.Terminated != nil:
		return fmt.Sprintf("terminated (%s, exit code %d)", st.Terminated.Reason, st.Terminated.ExitCode)
	case st.Waiting != nil:
		return "waiting (" + st.Waiting.Reason + ")"
	}
	return "not reported"
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

// ProcessNote says whether process pid of the target container still
// runs, from the agent's process list read through a new forward (the
// session's own has ended with it); ok is false when the agent cannot be
// asked.
func (ep *Endpoint) ProcessNote(ctx context.Context, pid int) (note string, ok bool) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	f, err := forward.Start(ctx, ep.dialer, 0, ep.port)
	if err != nil {
		return "", false
	}
	defer f.Close()
	st, err := readStatus(ctx, f.Addr())
	if err != nil {
		return "", false
	}
	for _, p := range st.Processes {
		if p.PID == pid {
			return fmt.Sprintf("process %d still runs in container %s", pid, ep.Container), true
		}
	}
	return fmt.Sprintf("process %d has exited (container %s runs on)", pid, ep.Container), true
}
