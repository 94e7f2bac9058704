package attach

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/kdap/kdap/agentapi"
	"github.com/kdap/kdap/dap"
)

// chooseProcesses picks the processes of the target container that a
// session debugs, as "process" asks: "" the agent's defaults (the workers
// when a master runs some, else the main processes), "all" every process
// of the runtime, a pid, or a part of the command line.
func chooseProcesses(st agentapi.Status, want string) ([]agentapi.Process, error) {
	procs := st.Processes
	if len(procs) == 0 { // an agent that does not list processes
		return []agentapi.Process{{PID: st.Target.PID, Command: st.Target.Exe, Role: "main", Default: true}}, nil
	}
	var out []agentapi.Process
	pid, isPID := strconv.Atoi(strings.TrimSpace(want))
	for _, p := range procs {
		switch {
		case want == "":
			if p.Default {
				out = append(out, p)
			}
		case isPID == nil:
			if p.PID == pid {
				if !p.Debuggable() {
					return nil, fmt.Errorf("process %d (%s) is not a %s program (%s): set \"process\" to one of %s", pid, p.Command, st.Target.Runtime, p.Role, debuggable(procs))
				}
				out = append(out, p)
			}
		case !p.Debuggable():
		case want == "all" || strings.Contains(p.Command, want):
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no process of the target container matches \"process\": %q; its processes: %s", want, debuggable(procs))
	}
	return out, nil
}

// debuggable lists the processes a session may pick, for messages.
func debuggable(procs []agentapi.Process) string {
	var s []string
	for _, p := range procs {
		if p.Debuggable() {
			s = append(s, fmt.Sprintf("%d (%s: %s)", p.PID, p.Role, shorten(p.Command, 60)))
		}
	}
	if len(s) == 0 {
		return "none of the runtime's"
	}
	return strings.Join(s, ", ")
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

// describeProcesses is the console's account of the container's processes
// and which the session debugs.
func describeProcesses(st agentapi.Status, chosen []agentapi.Process) string {
	picked := map[int]bool{}
	for _, p := range chosen {
		picked[p.PID] = true
	}
	var b strings.Builder
	fmt.Fprintf(&b, "kdap: the target container runs %d processes:", len(st.Processes))
	for _, p := range st.Processes {
		mark := "  "
		if picked[p.PID] {
			mark = "▶ "
		}
		fmt.Fprintf(&b, "\n  %spid %-6d %-7s %s", mark, p.PID, p.Role, shorten(p.Command, 100))
	}
	if !st.ProcessesExact {
		b.WriteString("\n  (the agent could not tell this container's processes from other containers' of the pod: it took all but pause)")
	}
	return b.String()
}

// childConfig is a child session's attach configuration: the parent's,
// with the target narrowed by set (target, process, …) and the parent-only
// fields removed.
func childConfig(raw json.RawMessage, name string, set map[string]any) map[string]any {
	cfg := map[string]any{}
	json.Unmarshal(raw, &cfg)
	for _, k := range []string{"replicas", "newReplicas", "__sessionId", "__restart"} {
		delete(cfg, k)
	}
	for k, v := range set {
		cfg[k] = v
	}
	cfg["name"] = name
	return cfg
}

// feed sends child sessions to a parent session: the first ones at once,
// then whatever poll finds every interval until the parent ends. Stop ends
// the poller, waits for it and runs cleanup.
func feed(first []dap.Child, every time.Duration, poll func(ctx context.Context) []dap.Child, cleanup func()) *dap.Children {
	ch := make(chan dap.Child, len(first)+16)
	for _, c := range first {
		ch <- c
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(ch)
		if poll == nil {
			return
		}
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			for _, c := range poll(ctx) {
				select {
				case ch <- c:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	var once sync.Once
	return &dap.Children{Start: ch, Stop: func() {
		once.Do(func() {
			cancel()
			<-done
			if cleanup != nil {
				cleanup()
			}
		})
	}}
}

// processChildren makes the session a parent with one child per chosen
// process; workers that start later (a gunicorn worker replaced after
// max_requests) join, and the console says when one exits.
func processChildren(ep *Endpoint, raw json.RawMessage, args Args, chosen []agentapi.Process, r dap.Reporter) *dap.Debugger {
	started := map[int]bool{}
	child := func(p agentapi.Process) dap.Child {
		started[p.PID] = true
		return dap.Child{Configuration: childConfig(raw, fmt.Sprintf("%s pid %d (%s)", ep.Pod, p.PID, p.Role), map[string]any{
			"target": "pod/" + ep.Pod, "namespace": ep.Namespace, "container": ep.Container,
			"runtime": ep.Status.Target.Runtime, "process": strconv.Itoa(p.PID),
		})}
	}
	var first []dap.Child
	for _, p := range chosen {
		first = append(first, child(p))
	}
	failing := false
	poll := func(ctx context.Context) []dap.Child {
		st, err := readStatus(ctx, ep.Forward.Addr())
		if err != nil {
			if ctx.Err() == nil && !failing {
				r.Output(fmt.Sprintf("kdap: cannot read the debugger container's process list (%v): new workers are not attached until it answers", err))
			}
			failing = true
			if ctx.Err() == nil {
				select {
				case <-ep.Forward.Done():
					ep.Reforward(ctx)
				default:
				}
			}
			return nil
		}
		failing = false
		alive := map[int]bool{}
		for _, p := range st.Processes {
			alive[p.PID] = true
		}
		for pid := range started {
			if !alive[pid] {
				delete(started, pid)
				r.Output(fmt.Sprintf("kdap: process %d in pod %s has exited: its child session ends", pid, ep.Pod))
			}
		}
		now, err := chooseProcesses(st, args.Process)
		if err != nil {
			return nil
		}
		var out []dap.Child
		for _, p := range now {
			if !started[p.PID] {
				r.Output(fmt.Sprintf("kdap: process %d (%s) started in pod %s: attaching it", p.PID, p.Role, ep.Pod))
				out = append(out, child(p))
			}
		}
		return out
	}
	r.Output(fmt.Sprintf("kdap: starting a child session for each of %d processes; workers that start later join", len(chosen)))
	return &dap.Debugger{Children: feed(first, time.Second, poll, func() { ep.Forward.Close() })}
}

// replicaChildren makes the session a parent with one child per Running
// pod of a workload; with newReplicas, pods that start later join. A pod
// that goes away ends its own child session (its forward is lost).
func (a *Attacher) replicaChildren(ctx context.Context, raw json.RawMessage, args Args, kind, name string, r dap.Reporter) (*dap.Debugger, error) {
	cl, err := a.cluster(args)
	if err != nil {
		return nil, err
	}
	client, ns := cl.Client, firstNonEmpty(args.Namespace, cl.Namespace)
	r.Progress(fmt.Sprintf("listing the pods of %s/%s in namespace %s", kind, name, ns))
	pods, err := workloadPods(ctx, client, ns, kind, name)
	if err != nil {
		return nil, err
	}
	started := map[string]bool{}
	child := func(p corev1.Pod) dap.Child {
		started[p.Name] = true
		return dap.Child{Configuration: childConfig(raw, "pod "+p.Name, map[string]any{"target": "pod/" + p.Name, "namespace": ns})}
	}
	running := func(pods []corev1.Pod) []corev1.Pod {
		var out []corev1.Pod
		for _, p := range pods {
			if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
				out = append(out, p)
			}
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
		return out
	}
	var first []dap.Child
	var names []string
	for _, p := range running(pods) {
		first = append(first, child(p))
		names = append(names, p.Name)
	}
	r.Output(fmt.Sprintf("kdap: %s/%s has %d Running pods (%s): starting a child session for each", kind, name, len(first), strings.Join(names, ", ")))
	var poll func(ctx context.Context) []dap.Child
	if args.NewReplicas {
		poll = func(ctx context.Context) []dap.Child {
			pods, err := workloadPods(ctx, client, ns, kind, name)
			if err != nil && ctx.Err() == nil {
				pods = nil // none Running now: every child has gone
			}
			alive := map[string]bool{}
			var out []dap.Child
			for _, p := range running(pods) {
				alive[p.Name] = true
				if !started[p.Name] {
					r.Output(fmt.Sprintf("kdap: pod %s of %s/%s is Running: attaching it", p.Name, kind, name))
					out = append(out, child(p))
				}
			}
			for n := range started {
				if !alive[n] && ctx.Err() == nil {
					delete(started, n)
					r.Output(fmt.Sprintf("kdap: pod %s of %s/%s is gone: its child session ends", n, kind, name))
				}
			}
			return out
		}
		r.Output(fmt.Sprintf("kdap: pods of %s/%s that start during this session are attached too (newReplicas)", kind, name))
	}
	return &dap.Debugger{Children: feed(first, 2*time.Second, poll, nil)}, nil
}
