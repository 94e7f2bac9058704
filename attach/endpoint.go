package attach

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kdap/kdap/agentapi"
	"github.com/kdap/kdap/agentdoor"
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
			agent, err := agentdoor.Dial(ctx, fwd.Addr())
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
// pod's status and the kubelet's Events say. A restart under the session
// is told as one, with its cause; while the pod's status has yet to catch
// up with a debugger container that ended, it is asked again for a while.
func (ep *Endpoint) TargetNote(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	for {
		note, settled := ep.targetNote(ctx)
		if settled {
			return note
		}
		select {
		case <-ctx.Done():
			return note
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// targetNote is one reading of TargetNote; settled is false while the
// target reads as running unchanged but the debugger container is not.
func (ep *Endpoint) targetNote(ctx context.Context) (note string, settled bool) {
	pod, err := ep.Client.CoreV1().Pods(ep.Namespace).Get(ctx, ep.Pod, metav1.GetOptions{})
	if err != nil && apierrors.ReasonForError(err) == metav1.StatusReasonUnknown && ctx.Err() == nil {
		// Not the API server's answer: the connection it was asked on died
		// (often with the forward that just ended); a new one may not.
		pod, err = ep.Client.CoreV1().Pods(ep.Namespace).Get(ctx, ep.Pod, metav1.GetOptions{})
	}
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Sprintf("pod %s/%s has been deleted", ep.Namespace, ep.Pod), true
	case err != nil:
		return fmt.Sprintf("the cluster cannot be asked about pod %s/%s now (%v)", ep.Namespace, ep.Pod, err), true
	case pod.UID != ep.PodUID:
		return fmt.Sprintf("pod %s/%s has been replaced by a new pod of that name", ep.Namespace, ep.Pod), true
	case pod.DeletionTimestamp != nil:
		return fmt.Sprintf("pod %s/%s is being deleted", ep.Namespace, ep.Pod), true
	}
	var target *corev1.ContainerStatus
	for i, st := range pod.Status.ContainerStatuses {
		if st.Name == ep.Container {
			target = &pod.Status.ContainerStatuses[i]
		}
	}
	agent := "not reported"
	for _, st := range pod.Status.EphemeralContainerStatuses {
		if st.Name == ep.Agent {
			agent = describeState(st.State)
		}
	}
	if target == nil {
		return fmt.Sprintf("container %s is not reported; debugger container %s is %s", ep.Container, ep.Agent, agent), true
	}
	killed := ep.kubeletKill(ctx)
	restarted := target.RestartCount > ep.Restarts || (ep.ContainerID != "" && target.ContainerID != "" && target.ContainerID != ep.ContainerID)
	switch {
	case restarted:
		return fmt.Sprintf("container %s was restarted (restart %d): %s; it runs anew, with none of this session's breakpoints, and debugger container %s is %s",
			ep.Container, target.RestartCount, restartCause(target.LastTerminationState.Terminated, killed), ep.Agent, agent), true
	case target.State.Terminated != nil:
		return fmt.Sprintf("container %s has ended: %s; debugger container %s is %s", ep.Container, restartCause(target.State.Terminated, killed), ep.Agent, agent), true
	case killed != "":
		return fmt.Sprintf("the kubelet is restarting container %s (%s); debugger container %s is %s", ep.Container, killed, ep.Agent, agent), true
	}
	note = fmt.Sprintf("container %s is %s; debugger container %s is %s", ep.Container, describeState(target.State), ep.Agent, agent)
	if agent == "running" {
		note += " (it resumes the target once its last client is gone)"
	}
	return note, agent == "running" || target.State.Running == nil
}

// restartCause says why a container ended: the kubelet's kill (a failed
// liveness probe), out of memory, or its exit code.
func restartCause(t *corev1.ContainerStateTerminated, killed string) string {
	switch {
	case killed != "":
		return "the kubelet killed it: " + killed
	case t == nil:
		return "the cause is not reported"
	case t.Reason == "OOMKilled":
		return "it was OOMKilled (it used more memory than its limit)"
	case t.Signal != 0:
		return fmt.Sprintf("it was killed by signal %d (%s)", t.Signal, t.Reason)
	}
	return fmt.Sprintf("it exited with code %d (%s)", t.ExitCode, t.Reason)
}

// kubeletKill is the kubelet's "Killing" Event for the target container
// since the session began, e.g. "Container app failed liveness probe,
// will be restarted", or "" (none, or Events may not be read).
func (ep *Endpoint) kubeletKill(ctx context.Context) string {
	evs, err := ep.Client.CoreV1().Events(ep.Namespace).List(ctx, metav1.ListOptions{
		FieldSelector: fmt.Sprintf("involvedObject.name=%s,involvedObject.uid=%s,reason=Killing", ep.Pod, ep.PodUID)})
	if err != nil {
		return ""
	}
	kill := ""
	for _, ev := range evs.Items {
		last := ev.LastTimestamp.Time
		if last.IsZero() {
			last = ev.EventTime.Time
		}
		if strings.Contains(ev.Message, "Container "+ep.Container+" ") && !last.Before(ep.attachedAt.Truncate(time.Second)) {
			kill = ev.Message
		}
	}
	return kill
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
