// Package doctor checks, before anything is added to a pod, whether kdap
// can debug a target: every API permission kdap uses (as
// SelfSubjectAccessReviews), the namespace's PodSecurity level against the
// debugger container this target needs, the debugger image, the runtime
// guess, and what only the first attach can tell, with how it will say so.
// It changes nothing in the cluster.
package doctor

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kdap/kdap/agentdoor"
	"github.com/kdap/kdap/attach"
	"github.com/kdap/kdap/audit"
	"github.com/kdap/kdap/imageconfig"
	"github.com/kdap/kdap/inject"
	"github.com/kdap/kdap/rbac"
)

// Result is a check's outcome.
type Result string

const (
	OK      Result = "ok"
	Blocks  Result = "BLOCKS"  // kdap cannot debug the target until it is fixed
	Warn    Result = "warn"    // kdap debugs it, with less (said at attach)
	Unknown Result = "unknown" // only the first attach can tell; how it reports it is the fix
)

// Check is one row of the report.
type Check struct {
	Name   string `json:"check"`
	Result Result `json:"result"`
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"` // what to do; for Unknown, what the first attach says
}

// Report is what kdap doctor found.
type Report struct {
	Target    string   `json:"target"`
	Namespace string   `json:"namespace"`
	Who       string   `json:"user"`
	Checks    []Check  `json:"checks"`
	Notes     []string `json:"notes,omitempty"` // what kdap would also say at attach
}

// Blocking counts the checks that block debugging.
func (r Report) Blocking() int {
	n := 0
	for _, c := range r.Checks {
		if c.Result == Blocks {
			n++
		}
	}
	return n
}

// Run checks the target of args in cl. progress, when set, hears each
// step.
func Run(ctx context.Context, cl attach.Cluster, cfg attach.Config, args attach.Args, progress func(string)) Report {
	ns := args.Namespace
	if ns == "" {
		ns = cl.Namespace
	}
	args.Namespace = ns
	rep := Report{Target: args.Target, Namespace: ns, Who: audit.Who(ctx, cl.Client)}
	say := func(s string) {
		if progress != nil {
			progress(s)
		}
	}
	say("asking the API server what " + rep.Who + " may do in namespace " + ns)
	rep.Checks = permissions(ctx, cl.Client, ns, args.Target, rep.Who)

	say("working out the debugger container for " + args.Target)
	notes := &notes{progress: say}
	plan, err := attach.PlanFor(ctx, cl, cfg, args, notes)
	if err != nil {
		rep.Checks = append(rep.Checks, Check{Name: "target", Result: Blocks, Detail: err.Error(),
			Fix: "the checks of the debugger container need the target: fix this first"})
		rep.Notes = notes.said
		return rep
	}
	rep.Checks = append(rep.Checks, Check{Name: "target", Result: OK,
		Detail: fmt.Sprintf("pod %s, container %s, on node %s", plan.Pod.Name, plan.Container, plan.Pod.Spec.NodeName)})
	rep.Checks = append(rep.Checks, runtimeCheck(plan))

	key, err := agentdoor.PublicKey()
	if err != nil {
		rep.Checks = append(rep.Checks, Check{Name: "kdap's key", Result: Blocks, Detail: err.Error(),
			Fix: "kdap keeps its key in " + agentdoor.KeyFile() + ": make its directory writable"})
	}
	if agent, ok := inject.FindRunning(plan.Pod, plan.Container, plan.Options.Image, key); ok && err == nil {
		rep.Checks = append(rep.Checks, Check{Name: "debugger container", Result: OK,
			Detail: fmt.Sprintf("kdap reuses %s, running in the pod with this machine's key: nothing is added, so PodSecurity and the image do not come into it", agent.Name)})
	} else {
		rep.Checks = append(rep.Checks, privileges(plan), podSecurity(plan))
		say("checking that " + plan.Options.Image + " can be pulled")
		rep.Checks = append(rep.Checks, image(ctx, cl.Client, plan))
	}
	rep.Checks = append(rep.Checks, unknowns(plan, notes)...)
	for _, n := range notes.said {
		if n != plan.RuntimeNote {
			rep.Notes = append(rep.Notes, n)
		}
	}
	return rep
}

// notes is the attach.Reporter of the plan: it keeps what kdap would say.
type notes struct {
	progress func(string)
	said     []string
}

func (n *notes) Progress(s string) { n.progress(s) }
func (n *notes) Output(s string)   { n.said = append(n.said, s) }

// permissions asks for every permission kdap uses. Debug's block when
// missing, and a workload's when the target names one; the others warn.
func permissions(ctx context.Context, client kubernetes.Interface, ns, target, who string) []Check {
	kind, _ := attach.TargetKind(target)
	var out []Check
	for _, p := range rbac.Permissions {
		resource, sub, _ := strings.Cut(p.Resource, "/")
		where := ns
		if p.Cluster {
			where = ""
		}
		c := Check{Name: strings.Join(p.Verbs, ",") + " " + p.Resource, Result: OK, Detail: p.Feature.Name + ": " + p.Why}
		var missing []string
		for _, verb := range p.Verbs {
			ok, err := inject.CanI(ctx, client, where, verb, resource, sub)
			if err != nil {
				c.Result, c.Detail = Unknown, fmt.Sprintf("the API server did not answer a SelfSubjectAccessReview: %v", err)
				c.Fix = "kdap's first attach reports a missing permission with what to grant"
				break
			}
			if !ok {
				missing = append(missing, verb)
			}
		}
		if len(missing) > 0 {
			c.Result = Warn
			if p.Required() || workloadOf(p, kind) {
				c.Result = Blocks
			}
			scope := "in namespace " + ns
			if p.Cluster {
				scope = "cluster-wide (a ClusterRole grants it)"
			}
			c.Detail = fmt.Sprintf("%s may not %s %s %s", who, strings.Join(missing, ","), p.Resource, scope)
			if p.Without != "" {
				c.Detail += ": " + p.Without
			} else {
				c.Detail += ", which kdap needs to " + p.Why
			}
			user := who
			if user == "unknown" {
				user = "YOU"
			}
			c.Fix = fmt.Sprintf("ask for a Role with it: `kdap rbac -n %s --feature %s --user %s` prints one", ns, p.Feature.Name, user)
		}
		out = append(out, c)
	}
	return out
}

// workloadOf says whether p resolves targets of kind.
func workloadOf(p rbac.Permission, kind string) bool {
	return p.Feature == rbac.Workloads && p.Resource == kind+"s"
}

func runtimeCheck(p *attach.Plan) Check {
	how := "asked for"
	if p.RuntimeNote != "" {
		how = p.RuntimeNote[strings.Index(p.RuntimeNote, "(")+1 : strings.LastIndex(p.RuntimeNote, ")")]
	}
	return Check{Name: "runtime", Result: OK, Detail: fmt.Sprintf("%s, debugged with %s through %s (%s); the agent checks the process and names the right runtime if this is wrong",
		p.Runtime.Title, p.Runtime.Debugger, p.Runtime.Access, how)}
}

// privileges says as whom, and with what, the debugger container runs.
func privileges(p *attach.Plan) Check {
	o := p.Options
	switch {
	case o.RunAsUser != nil && *o.RunAsUser != 0:
		return Check{Name: "privileges", Result: OK, Detail: fmt.Sprintf("the debugger runs as uid %d, the target's, with every capability dropped", *o.RunAsUser)}
	case o.Ptrace:
		return Check{Name: "privileges", Result: OK, Detail: "the debugger runs as root with SYS_PTRACE: the target runs as root, or as a user its pod spec does not name",
			Fix: "set a non-root runAsUser in the pod spec: kdap then needs no capability"}
	}
	return Check{Name: "privileges", Result: OK, Detail: "the debugger runs as root, with no added capability (the target runs as root, or as a user its pod spec does not name)"}
}

// podSecurity compares the namespace's enforced level with the strictest
// the debugger container passes.
func podSecurity(p *attach.Plan) Check {
	c := Check{Name: "PodSecurity"}
	if p.Namespace == nil {
		c.Result, c.Detail = Unknown, fmt.Sprintf("kdap may not read namespace %s, so it cannot compare its PodSecurity level with the debugger container's", p.Pod.Namespace)
		c.Fix = "the patch is then refused by admission, and kdap's error names the rule that blocks"
		return c
	}
	level := inject.PodSecurityLevel(p.Namespace)
	admits, _ := inject.Admits(p.Options)
	if err := inject.CheckPodSecurity(p.Namespace, p.Options); err != nil {
		c.Result, c.Detail = Blocks, err.Error()
		return c
	}
	c.Result, c.Detail = OK, fmt.Sprintf("namespace %s enforces %s; the debugger container passes %s", p.Namespace.Name, level, admits)
	return c
}

// image checks the debugger image as far as kdap can from here: on the
// node already, or served by its registry to kdap with the pod's pull
// secrets. The node pulls it with its own network and credentials.
func image(ctx context.Context, client kubernetes.Interface, p *attach.Plan) Check {
	ref := p.Options.Image
	c := Check{Name: "debugger image"}
	if node, err := client.CoreV1().Nodes().Get(ctx, p.Pod.Spec.NodeName, metav1.GetOptions{}); err == nil && onNode(node, ref) {
		c.Result, c.Detail = OK, fmt.Sprintf("%s is on node %s already", ref, node.Name)
		return c
	}
	_, err := attach.ReadImageConfig(ctx, client, p.Pod, ref)
	other := fmt.Sprintf("name another: --%s, %s or \"image\" in the launch configuration", p.Runtime.ImageFlag(), p.Runtime.ImageEnv())
	switch {
	case err == nil:
		c.Result, c.Detail = OK, fmt.Sprintf("%s is served by its registry (to kdap, from here: the node pulls it with its own network and credentials)", ref)
	case imageconfig.Missing(err):
		c.Result, c.Detail = Blocks, fmt.Sprintf("%s does not exist: its registry says %v", ref, err)
		c.Fix = "push kdap's debugger images where the node can pull them (make images), or " + other
	case imageconfig.Denied(err):
		c.Result, c.Detail = Warn, fmt.Sprintf("%s's registry refused kdap's credentials (%v); the node may have its own", ref, err)
		c.Fix = "if the node has none either, the first attach fails with the kubelet's ErrImagePull; add an image pull secret to the pod, or " + other
	default:
		c.Result, c.Detail = Unknown, fmt.Sprintf("kdap cannot reach %s's registry from here (%v); the node may", ref, err)
		c.Fix = "if the node cannot pull it, the first attach fails with the kubelet's reason (ErrImagePull, ImagePullBackOff) and nothing is left running"
	}
	return c
}

// onNode says whether the node reports the image among those it has.
func onNode(node *corev1.Node, ref string) bool {
	for _, img := range node.Status.Images {
		if slices.Contains(img.Names, ref) {
			return true
		}
	}
	return false
}

// unknowns are the runtime's needs kdap cannot check from the API server,
// with what the pod spec and the image say of them where they can.
func unknowns(p *attach.Plan, r attach.Reporter) []Check {
	asTargetUser := p.Options.RunAsUser != nil && *p.Options.RunAsUser != 0 && !p.Options.Ptrace
	var out []Check
	for _, u := range p.Runtime.Unknowns {
		if u.AsTargetUser && !asTargetUser {
			continue
		}
		c := Check{Name: u.Name, Result: Unknown, Detail: u.What, Fix: "the first attach tells: " + u.Report}
		if u.Seen != nil {
			if found, ok := u.Seen(p.Evidence(r)); found != "" {
				c.Result, c.Detail, c.Fix = OK, found, ""
				if !ok {
					c.Result, c.Fix = Blocks, "it needs "+u.What
				}
			}
		}
		out = append(out, c)
	}
	return out
}
