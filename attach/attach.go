package attach

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kdap/kdap/agentapi"
	"github.com/kdap/kdap/agentdoor"
	"github.com/kdap/kdap/audit"
	"github.com/kdap/kdap/dap"
	"github.com/kdap/kdap/forward"
	"github.com/kdap/kdap/imageconfig"
	"github.com/kdap/kdap/inject"
	"github.com/kdap/kdap/rbac"
	"github.com/kdap/kdap/runtimes"
)

// Config is how the kdap process is set up; attach arguments override the
// cluster fields per session.
type Config struct {
	Kubeconfig string            // default kubeconfig path ("" = the usual rules)
	Context    string            // default context
	As         string            // user to impersonate, as kubectl's --as
	AsGroups   []string          // groups to impersonate, as kubectl's --as-group
	Images     map[string]string // debugger image by runtime name (default: the runtime's DefaultImage)
	AgentTTL   time.Duration     // idle time before an agent exits
	// Lazy injects agents that attach no debugger until a session asks
	// (kdap's diagnostics: nothing injected into the target that it does
	// not need). A reused agent is as it is.
	Lazy bool
	// Raw says the session's bytes are relayed as they are (kdap attach):
	// kdap cannot hold them to a namespace's limits, so such a namespace
	// refuses them.
	Raw bool
	// Token, when set, must be every attach request's "token" (kdap dap
	// --token-file): a local process that can reach kdap's port but cannot
	// read the token file gets no session.
	Token string
}

// Reporter receives progress and notes (dap.Reporter satisfies it).
type Reporter interface {
	Progress(step string)
	Output(text string)
}

// Endpoint is a forwarded, ready agent.
type Endpoint struct {
	Pod, Namespace, Container, Agent string
	Reused                           bool
	Status                           agentapi.Status
	Forward                          *forward.Forward
	PodUID                           types.UID
	Client                           kubernetes.Interface // the client it was reached with
	// Staging guards a DAP session on this target (probes, the namespace's
	// policy), with what the user is told before any stop.
	Staging      dap.Staging
	StagingNotes []string
	// ContainerID and Restarts are the target container's at attach, so
	// that a restart under the session is told as one.
	ContainerID string
	Restarts    int32
	Who         string // the user the API server sees kdap as

	attachedAt time.Time       // when kdap found the pod
	dialer     *forward.Dialer // to the pod's portforward subresource
	port       int             // the agent's port in the pod
}

// Reforward replaces a lost forward with a new one to the same debugger
// container, and reads its status again; no container is added. It fails
// with an *inject.AgentExitedError once the container has exited.
func (ep *Endpoint) Reforward(ctx context.Context) error {
	f, st, err := forwardToAgent(ctx, ep.Client, ep.dialer, ep.Namespace, ep.Pod, ep.Agent, ep.port, nil)
	if err != nil {
		return err
	}
	ep.Forward, ep.Status = f, st
	return nil
}

// Prepare resolves the target, reuses or injects the agent, and forwards
// its port. The caller closes ep.Forward. When the runtime was guessed and
// the agent finds the target is another runtime's, Prepare says so and
// adds that runtime's debugger instead, once.
func Prepare(ctx context.Context, cfg Config, args Args, r Reporter) (*Endpoint, error) {
	cl, err := Connect(cfg, args)
	if err != nil {
		return nil, err
	}
	return PrepareIn(ctx, cl, cfg, args, r)
}

// PrepareIn is Prepare in a given Cluster.
func PrepareIn(ctx context.Context, cl Cluster, cfg Config, args Args, r Reporter) (*Endpoint, error) {
	ep, err := prepare(ctx, cl, cfg, args, r)
	var exited *inject.AgentExitedError
	if err == nil || runtimes.Lookup(args.Runtime) != nil || !errors.As(err, &exited) {
		return ep, err
	}
	actual, said := agentapi.ParseWrongRuntime(exited.Message)
	if actual == nil {
		return nil, err
	}
	r.Output(fmt.Sprintf("kdap: debugger container %s found that %s; adding the %s debugger instead (%s stays in the pod's list of ephemeral containers, exited: Kubernetes cannot remove them)",
		exited.Name, strings.TrimSuffix(said, ` in the launch configuration`)+" to skip the guess", actual.Title, exited.Name))
	args.Runtime = actual.Name
	return prepare(ctx, cl, cfg, args, r)
}

// Cluster is where kdap works: the API client, the namespace to use when
// the attach arguments name none, and how to reach a pod's ports. Connect
// makes it from a kubeconfig; tests give a fake client.
type Cluster struct {
	Client    kubernetes.Interface
	Namespace string
	// Dialer dials pod's portforward subresource.
	Dialer func(namespace, pod string) (*forward.Dialer, error)
}

// Connect makes the Cluster of the kubeconfig the configuration and the
// attach arguments name.
func Connect(cfg Config, args Args) (Cluster, error) {
	restCfg, ns, err := clientConfig(cfg, args)
	if err != nil {
		return Cluster{}, err
	}
	client, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return Cluster{}, err
	}
	return Cluster{Client: client, Namespace: ns, Dialer: func(namespace, pod string) (*forward.Dialer, error) {
		return forward.NewDialer(restCfg, forward.URL(client, namespace, pod))
	}}, nil
}

// Plan is the agent kdap would inject for a target, worked out from the
// cluster with nothing changed in it.
type Plan struct {
	Pod       *corev1.Pod
	Container string
	Namespace *corev1.Namespace // nil when kdap may not read it
	Policy    Policy            // the namespace's kdap.dev annotations
	Staging   dap.Staging
	Notes     []string // said before the first stop
	Runtime   *runtimes.Runtime
	// RuntimeNote says how the runtime was chosen when it was not asked
	// for ("" when it was).
	RuntimeNote string
	Options     inject.Options // Port, Key and the injection record are set when injecting

	image func(Reporter) (*imageconfig.Config, error) // the target image's configuration, read once
}

// PlanFor resolves the target and works out the agent it needs: runtime,
// image, user, privileges. It injects nothing.
func PlanFor(ctx context.Context, cl Cluster, cfg Config, args Args, r Reporter) (*Plan, error) {
	client, ns := cl.Client, firstNonEmpty(args.Namespace, cl.Namespace)
	r.Progress(fmt.Sprintf("finding %s in namespace %s", args.Target, ns))
	pod, err := resolvePod(ctx, client, ns, args.Target, r.Output)
	if err != nil {
		return nil, err
	}
	container, err := pickContainer(pod, args.Container)
	if err != nil {
		return nil, err
	}
	p := &Plan{Pod: pod, Container: container}
	if p.Namespace, p.Policy, err = namespacePolicy(ctx, client, ns, r); err != nil {
		return nil, err
	}
	switch {
	case cfg.Raw:
		if err := p.Policy.refuseRaw(ns); err != nil {
			return nil, err
		}
	case !cfg.Lazy:
		if p.Staging, p.Notes, err = stagingFor(args, pod, container, p.Policy); err != nil {
			return nil, err
		}
	}
	image := imageReader(ctx, client, pod, container)
	p.image = image
	if p.Runtime, p.RuntimeNote = chooseRuntime(args.Runtime, pod, container, image, r); p.RuntimeNote != "" {
		r.Output(p.RuntimeNote)
	}
	ttl := cfg.AgentTTL
	if args.AgentTTL != "" {
		ttl, _ = time.ParseDuration(args.AgentTTL)
	}
	p.Options = inject.Options{Image: firstNonEmpty(args.Image, cfg.Images[p.Runtime.Name], p.Runtime.DefaultImage()), Target: container,
		Runtime: p.Runtime.Name, TTL: ttl, Ptrace: p.Runtime.NeedsPtrace(), Lazy: cfg.Lazy, ContainerID: containerID(pod, container)}
	uid, gid, err := targetUser(pod, container, image, r)
	if err != nil {
		return nil, err
	}
	if uid != nil && *uid != 0 {
		// As the target's own user the debugger may ptrace it and read its
		// files with no capability at all, so PodSecurity restricted
		// allows it.
		p.Options.RunAsUser, p.Options.RunAsGroup, p.Options.Ptrace = uid, gid, false
	}
	if p.Namespace != nil && inject.PodSecurityLevel(p.Namespace) == inject.Restricted {
		p.Options.Seccomp = true
	}
	return p, nil
}

// prepare is Prepare's one try.
func prepare(ctx context.Context, cl Cluster, cfg Config, args Args, r Reporter) (*Endpoint, error) {
	p, err := PlanFor(ctx, cl, cfg, args, r)
	if err != nil {
		return nil, err
	}
	client, pod, container, nsObj, opts := cl.Client, p.Pod, p.Container, p.Namespace, p.Options
	ns, debugImage, staging, notes := pod.Namespace, opts.Image, p.Staging, p.Notes
	ep := &Endpoint{Pod: pod.Name, Namespace: ns, Container: container, PodUID: pod.UID, Client: client,
		Staging: staging, StagingNotes: notes, ContainerID: containerID(pod, container), Restarts: restarts(pod, container),
		Who: audit.Who(ctx, client), attachedAt: time.Now()}
	opts.InjectedBy, opts.InjectedAt = ep.Who, time.Now()
	if opts.Key, err = agentdoor.PublicKey(); err != nil {
		return nil, err
	}

	var dialer *forward.Dialer
	var ahead <-chan openedForward // the first forward, opened while the container starts
	if agent, ok := inject.FindRunning(pod, container, debugImage, opts.Key); ok {
		ep.Agent, ep.Reused = agent.Name, true
		opts.Port = agent.Port
		r.Output(fmt.Sprintf("kdap: reusing debugger container %s in pod %s", agent.Name, pod.Name))
	} else {
		if nsObj != nil {
			if err := inject.CheckPodSecurity(nsObj, opts); err != nil {
				return nil, err
			}
		}
		if err := checkAccess(ctx, client, ns, ep.Who); err != nil {
			return nil, err
		}
		opts.Port = inject.FreePort(pod)
		ep.Agent = inject.NewName(pod, randomSuffix)
		r.Progress(fmt.Sprintf("adding debugger container %s (%s) to pod %s", ep.Agent, debugImage, pod.Name))
		if err := inject.Add(ctx, client, pod, inject.Container(ep.Agent, opts)); err != nil {
			return nil, err
		}
		if dialer, err = cl.Dialer(ns, pod.Name); err != nil {
			return nil, err
		}
		ahead = openForward(ctx, dialer, opts.Port)
		r.Progress("waiting for the debugger container to start")
		if err := inject.WaitRunning(ctx, client, ns, pod.Name, ep.Agent, 3*time.Minute); err != nil {
			discardForward(ahead)
			return nil, err
		}
	}
	if dialer == nil {
		if dialer, err = cl.Dialer(ns, pod.Name); err != nil {
			return nil, err
		}
	}
	ep.dialer, ep.port = dialer, opts.Port

	r.Progress("connecting to the debugger")
	ep.Forward, ep.Status, err = forwardToAgent(ctx, client, dialer, ns, pod.Name, ep.Agent, opts.Port, ahead)
	var exited *inject.AgentExitedError
	if ep.Reused && errors.As(err, &exited) {
		// It reached its idle TTL between being found and being reached.
		r.Output(fmt.Sprintf("kdap: debugger container %s has just exited; starting a new one", ep.Agent))
		return prepare(ctx, cl, cfg, args, r)
	}
	if err != nil {
		return nil, err
	}
	return ep, nil
}

// attachNeeds are the permissions an attach that adds a debugger
// container uses from its patch on: to add it, watch it start, reach it.
var attachNeeds = []struct{ verb, resource, subresource, why string }{
	{"patch", "pods", "ephemeralcontainers", "add the debugger container"},
	{"list", "pods", "", "watch it start"},
	{"watch", "pods", "", "watch it start"},
	{"get", "pods", "portforward", "reach it"},
	{"create", "pods", "portforward", "reach it"},
}

// checkAccess refuses, before anything is added, a user who lacks any of
// attachNeeds, naming them all: one who could add the debugger container
// but not use it would leave it in the pod, unreached until its idle TTL.
// An API server that does not answer the reviews leaves it to the calls.
func checkAccess(ctx context.Context, client kubernetes.Interface, ns, who string) error {
	missing := make([]string, len(attachNeeds))
	var wg sync.WaitGroup
	for i, p := range attachNeeds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if ok, err := inject.CanI(ctx, client, ns, p.verb, p.resource, p.subresource); err == nil && !ok {
				missing[i] = fmt.Sprintf("%q on %q (to %s)", p.verb, strings.TrimSuffix(p.resource+"/"+p.subresource, "/"), p.why)
			}
		}()
	}
	wg.Wait()
	missing = slices.DeleteFunc(missing, func(s string) bool { return s == "" })
	if len(missing) == 0 {
		return nil
	}
	list := missing[len(missing)-1]
	if len(missing) > 1 {
		list = strings.Join(missing[:len(missing)-1], ", ") + " and " + list
	}
	return fmt.Errorf("you may not debug in namespace %q: RBAC is missing %s; nothing was added to the pod. "+
		"Ask for a Role with what kdap uses (`kdap rbac -n %s %s` prints one); `kdap doctor` checks every permission",
		ns, list, ns, rbac.SubjectFlag(who))
}

// containerID is the ID the pod's status gives the container ("" before
// it has started).
func containerID(pod *corev1.Pod, container string) string {
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == container {
			return cs.ContainerID
		}
	}
	return ""
}

// chooseRuntime is the runtime asked for, or for "auto" the one the
// container's command, image configuration and image name suggest (the
// agent checks the process), with the note that says how it was chosen.
// When the pod spec does not say what the container runs, its image's
// configuration does: kdap reads it from the registry, and falls back to
// the pod spec when it cannot.
func chooseRuntime(name string, pod *corev1.Pod, container string, image func(Reporter) (*imageconfig.Config, error), r Reporter) (*runtimes.Runtime, string) {
	if rt := runtimes.Lookup(name); rt != nil {
		return rt, ""
	}
	if name, agent := inject.RunningRuntime(pod, container); runtimes.Lookup(name) != nil {
		rt := runtimes.Lookup(name)
		return rt, fmt.Sprintf("kdap: debugging container %s as %s (its running debugger container %s does; set \"runtime\" to choose)", container, rt.Title, agent)
	}
	c := podContainer(pod, container)
	e := runtimes.Evidence{Image: c.Image, Command: append(append([]string(nil), c.Command...), c.Args...)}
	if len(c.Command) == 0 {
		if img, err := image(r); err != nil {
			r.Output(fmt.Sprintf("kdap: cannot read the configuration of image %s (%v): guessing the runtime from the pod spec", runningImage(pod, c), err))
		} else {
			e.Command, e.Env = img.Command(c.Command, c.Args), img.Env
		}
	}
	rt, why := runtimes.Guess(e)
	return rt, fmt.Sprintf("kdap: debugging container %s as %s (guessed: %s; set \"runtime\" to choose)", container, rt.Title, why)
}

// podContainer is the pod's container named name (pickContainer chose it,
// so it is there).
func podContainer(pod *corev1.Pod, name string) corev1.Container {
	for _, c := range pod.Spec.Containers {
		if c.Name == name {
			return c
		}
	}
	return corev1.Container{Name: name}
}

// Evidence is what the pod spec and, when kdap can read it, the target
// image's configuration say the target container runs: its command and
// its environment's literal values.
func (p *Plan) Evidence(r Reporter) runtimes.Evidence {
	c := podContainer(p.Pod, p.Container)
	e := runtimes.Evidence{Image: c.Image, Command: append(append([]string(nil), c.Command...), c.Args...)}
	if img, err := p.image(r); err == nil {
		e.Command, e.Env = img.Command(c.Command, c.Args), img.Env
	}
	for _, v := range c.Env {
		e.Env = append(e.Env, v.Name+"="+v.Value)
	}
	return e
}

// imageReader reads the configuration of the image container runs, once,
// when first asked.
func imageReader(ctx context.Context, client kubernetes.Interface, pod *corev1.Pod, container string) func(Reporter) (*imageconfig.Config, error) {
	var (
		cfg  *imageconfig.Config
		err  error
		read bool
	)
	return func(r Reporter) (*imageconfig.Config, error) {
		if read {
			return cfg, err
		}
		read = true
		for _, c := range pod.Spec.Containers {
			if c.Name == container {
				ref := runningImage(pod, c)
				r.Progress("reading the configuration of image " + ref)
				cfg, err = ReadImageConfig(ctx, client, pod, ref)
				return cfg, err
			}
		}
		err = fmt.Errorf("pod %s has no container %s", pod.Name, container)
		return nil, err
	}
}

// targetUser is the uid and gid the target runs as: the pod spec's, or,
// when the spec only says runAsNonRoot, the numeric USER of its image
// (the kubelet accepts no other there). nil: root, or not known.
func targetUser(pod *corev1.Pod, container string, image func(Reporter) (*imageconfig.Config, error), r Reporter) (uid, gid *int64, err error) {
	uid, gid = inject.TargetUser(pod, container)
	if uid != nil || !inject.TargetNonRoot(pod, container) {
		return uid, gid, nil
	}
	img, err := image(r)
	if err != nil {
		r.Output(fmt.Sprintf("kdap: container %s runs as its image's non-root user, which kdap cannot read (%v): the debugger starts as root; set runAsUser in the pod spec to run it as the target's user", container, err))
		return nil, nil, nil
	}
	u, g, ok := numericUser(img.User)
	if !ok {
		return nil, nil, fmt.Errorf("container %s runs as non-root (runAsNonRoot), as its image's user %q, and kdap needs that user's number to run the debugger as it: set runAsUser (and runAsGroup) in the pod's securityContext", container, img.User)
	}
	if gid == nil {
		gid = g
	}
	return u, gid, nil
}

// numericUser parses an image's "uid[:gid]" USER.
func numericUser(user string) (uid, gid *int64, ok bool) {
	us, gs, hasGroup := strings.Cut(user, ":")
	u, err := strconv.ParseInt(us, 10, 64)
	if err != nil {
		return nil, nil, false
	}
	if !hasGroup {
		return &u, nil, true
	}
	g, err := strconv.ParseInt(gs, 10, 64)
	if err != nil {
		return nil, nil, false
	}
	return &u, &g, true
}

// runningImage is the image the container runs: the digest the kubelet
// reports, when it names a repository, else the pod spec's reference.
func runningImage(pod *corev1.Pod, c corev1.Container) string {
	for _, st := range pod.Status.ContainerStatuses {
		if st.Name == c.Name && strings.Contains(st.ImageID, "@sha256:") && !strings.HasPrefix(st.ImageID, "sha256:") {
			return strings.TrimPrefix(st.ImageID, "docker-pullable://")
		}
	}
	return c.Image
}

// ReadImageConfig reads the configuration of image ref as the pod's node
// would pull it: with the pod's image pull secrets (those kdap may read),
// for the node's architecture, within 10 s.
func ReadImageConfig(ctx context.Context, client kubernetes.Interface, pod *corev1.Pod, ref string) (*imageconfig.Config, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var secrets [][]byte
	for _, s := range pod.Spec.ImagePullSecrets {
		if sec, err := client.CoreV1().Secrets(pod.Namespace).Get(ctx, s.Name, metav1.GetOptions{}); err == nil {
			secrets = append(secrets, sec.Data[corev1.DockerConfigJsonKey])
		}
	}
	arch := "amd64" // the node's, if kdap may read it
	if node, err := client.CoreV1().Nodes().Get(ctx, pod.Spec.NodeName, metav1.GetOptions{}); err == nil && node.Status.NodeInfo.Architecture != "" {
		arch = node.Status.NodeInfo.Architecture
	}
	return imageconfig.Read(ctx, ref, arch, secrets)
}

// forwardToAgent forwards the agent's port and reads its status, trying
// again until the agent answers (it listens moments after its container
// runs), the container exits (an *inject.AgentExitedError), or 30 s pass.
// A refused connection ends the whole forward (forward.Forward), so each
// retry opens a new one, while kdap checks that the container still runs.
// ahead, if not nil, is the first try's forward, opened earlier by the
// caller (while the container started).
func forwardToAgent(ctx context.Context, client kubernetes.Interface, dialer *forward.Dialer, ns, pod, agent string, port int, ahead <-chan openedForward) (*forward.Forward, agentapi.Status, error) {
	deadline := time.Now().Add(30 * time.Second)
	pause := 10 * time.Millisecond
	next := ahead
	if next == nil {
		next = openForward(ctx, dialer, port)
	}
	for {
		o := <-next
		if o.err == nil {
			st, serr := readStatus(ctx, o.f.Addr())
			if serr == nil {
				return o.f, st, nil
			}
			o.f.Close()
			o.err = serr
		}
		next = openForward(ctx, dialer, port)
		if exitErr := inject.CheckAlive(ctx, client, ns, pod, agent); exitErr != nil { // while next opens
			discardForward(next)
			return nil, agentapi.Status{}, exitErr
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			discardForward(next)
			return nil, agentapi.Status{}, fmt.Errorf("the debugger container %s in pod %s/%s does not answer on 127.0.0.1:%d (%v): its log says why: `kubectl logs -n %s %s -c %s`",
				agent, ns, pod, port, o.err, ns, pod, agent)
		}
		select {
		case <-ctx.Done():
		case <-time.After(pause):
		}
		pause = min(2*pause, 200*time.Millisecond)
	}
}

// openedForward is a forward being opened by openForward.
type openedForward struct {
	f   *forward.Forward
	err error
}

// openForward opens a forward to the pod's port in the background.
func openForward(ctx context.Context, dialer *forward.Dialer, port int) <-chan openedForward {
	ch := make(chan openedForward, 1)
	go func() {
		f, err := forward.Start(ctx, dialer, 0, port)
		ch <- openedForward{f, err}
	}()
	return ch
}

// discardForward closes a forward openForward is opening, once it is open.
func discardForward(ch <-chan openedForward) {
	go func() {
		if o := <-ch; o.f != nil {
			o.f.Close()
		}
	}()
}

// readStatus GETs the agent's status document through the forward.
func readStatus(ctx context.Context, addr string) (agentapi.Status, error) {
	var st agentapi.Status
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
	if err != nil {
		return st, err
	}
	req.Close = true
	resp, err := agentdoor.HTTP.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st); err != nil {
		return st, fmt.Errorf("agent status: %w", err)
	}
	if st.Target == nil {
		return st, errors.New("agent status has no target")
	}
	return st, nil
}

// clientConfig loads the kubeconfig (attach arguments first, then kdap's
// flags, then the usual rules) and the namespace to use.
func clientConfig(cfg Config, args Args) (*rest.Config, string, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if k := firstNonEmpty(args.Kubeconfig, cfg.Kubeconfig); k != "" {
		rules.ExplicitPath = k
	}
	overrides := &clientcmd.ConfigOverrides{CurrentContext: firstNonEmpty(args.Context, cfg.Context)}
	overrides.AuthInfo.Impersonate, overrides.AuthInfo.ImpersonateGroups = cfg.As, cfg.AsGroups
	loader := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides)
	restCfg, err := loader.ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("no usable kubeconfig (%v): set \"kubeconfig\"/\"context\" in the launch configuration or KUBECONFIG", err)
	}
	restCfg.QPS, restCfg.Burst = 50, 100 // the default 5/10 delayed patches behind status polling
	restCfg.Timeout = 30 * time.Second
	ns := args.Namespace
	if ns == "" {
		if ns, _, err = loader.Namespace(); err != nil || ns == "" {
			ns = "default"
		}
	}
	return restCfg, ns, nil
}

// DefaultNamespace is the namespace of the kubeconfig context kdap uses.
func DefaultNamespace(cfg Config) (string, error) {
	_, ns, err := clientConfig(cfg, Args{})
	return ns, err
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

func randomSuffix() string {
	const letters = "bcdfghjklmnpqrstvwxz2456789"
	b := make([]byte, 5)
	rand.Read(b)
	for i := range b {
		b[i] = letters[int(b[i])%len(letters)]
	}
	return string(b)
}

// Attacher connects DAP sessions to Kubernetes targets (dap.Attacher).
type Attacher struct {
	Config Config
	// Connect makes the cluster an attach works in (nil: Connect, from
	// the kubeconfig); tests give a fake client here.
	Connect func(Config, Args) (Cluster, error)
}

// cluster is the Cluster of one attach.
func (a *Attacher) cluster(args Args) (Cluster, error) {
	if a.Connect != nil {
		return a.Connect(a.Config, args)
	}
	return Connect(a.Config, args)
}

// Attach prepares the endpoint, picks the processes to debug, translates
// the attach arguments for the runtime's debugger and opens the DAP
// connection through the forward. Several processes, or replicas "all",
// make the session a parent of one child session each, when the client
// takes startDebugging.
func (a *Attacher) Attach(ctx context.Context, req dap.AttachRequest, r dap.Reporter) (*dap.Debugger, error) {
	raw := req.Arguments
	args, err := ParseArgs(raw)
	if err != nil {
		return nil, err
	}
	if a.Config.Token != "" && subtle.ConstantTimeCompare([]byte(args.Token), []byte(a.Config.Token)) != 1 {
		what := "has no \"token\""
		if args.Token != "" {
			what = "has the wrong \"token\""
		}
		return nil, fmt.Errorf("this kdap dap asks every attach for its token, and this one %s: set \"token\" in the launch configuration to the contents of the file given to --token-file", what)
	}
	if kind, name, _ := targetRef(args.Target); args.Replicas == "all" && kind != "pod" {
		if !req.ChildSessions {
			return nil, fmt.Errorf(`"replicas": "all" needs an IDE that starts child sessions (DAP startDebugging), and this one does not: debug each pod in a session of its own ("target": "pod/NAME"), or leave "replicas" out for the newest pod`)
		}
		return a.replicaChildren(ctx, raw, args, kind, name, r)
	}
	cl, err := a.cluster(args)
	if err != nil {
		return nil, err
	}
	ep, err := PrepareIn(ctx, cl, a.Config, args, r)
	if err != nil {
		return nil, err
	}
	t := ep.Status.Target
	rt := runtimes.Lookup(t.Runtime)
	if rt == nil {
		ep.Forward.Close()
		return nil, fmt.Errorf("the debugger container reports a %q target, which this kdap does not know: use the same kdap version as the debugger image", t.Runtime)
	}
	if ep.Status.Unavailable != "" {
		ep.Forward.Close()
		return nil, errors.New(ep.Status.Unavailable)
	}
	chosen, err := chooseProcesses(ep.Status, args.Process)
	if err != nil {
		ep.Forward.Close()
		return nil, err
	}
	if len(ep.Status.Processes) > 1 {
		r.Output(describeProcesses(ep.Status, chosen))
	}
	if len(chosen) > 1 {
		if req.ChildSessions {
			return processChildren(ep, raw, args, chosen, r), nil
		}
		r.Output(fmt.Sprintf("kdap: your IDE does not start child sessions (DAP startDebugging), so this session debugs pid %d only: set \"process\" to another pid to debug that one", chosen[0].PID))
		chosen = chosen[:1]
	}
	if pid := chosen[0].PID; pid != t.PID {
		other := *t // a process of the same container and runtime: the same program's sources
		other.PID = pid
		t = &other
	}
	var localFiles []string
	if args.LocalRoot != "" {
		localFiles, _ = runtimes.LocalSources(args.LocalRoot, rt.Extensions, 20000)
	}
	debuggerArgs, mapping, err := rt.AttachArguments(raw, t, args.LocalRoot, localFiles)
	if err != nil {
		ep.Forward.Close()
		return nil, err
	}
	r.Output(fmt.Sprintf("kdap: attached %s to pid %d (%s) in pod %s/%s, container %s", rt.Debugger, t.PID, Describe(rt, t), ep.Namespace, ep.Pod, ep.Container))
	if mapping != nil {
		r.Output(fmt.Sprintf("kdap: source paths %s ↔ %s (set %q to override)", mapping.From, mapping.To, rt.MappingKey()))
	} else if args.LocalRoot != "" && !rt.ExplicitMapping(raw) && len(t.Sources) > 0 && !strings.HasPrefix(t.Sources[0], args.LocalRoot) {
		r.Output(fmt.Sprintf("kdap: no file under %s matches the program's sources (e.g. %s): set %q so breakpoints resolve", args.LocalRoot, t.Sources[0], rt.MappingKey()))
	}
	for _, w := range t.Warnings {
		r.Output("kdap: warning: " + w)
	}
	conn, err := agentdoor.Dial(ctx, ep.Forward.Addr())
	if err != nil {
		ep.Forward.Close()
		return nil, err
	}
	if t.PID != ep.Status.Target.PID {
		if _, err := io.WriteString(conn, agentapi.ProcessLine(t.PID)); err != nil {
			conn.Close()
			ep.Forward.Close()
			return nil, err
		}
	}
	for _, n := range ep.StagingNotes {
		r.Output(n)
	}
	staging := ep.Staging
	staging.Ended = auditSession(ctx, ep, t, staging, r)
	fc := &forwardedConn{Conn: conn, fwd: ep.Forward}
	go func() { // a lost forward ends the connection, so the session notices
		<-ep.Forward.Done()
		conn.Close()
	}()
	return &dap.Debugger{Conn: fc, AttachArguments: debuggerArgs, Staging: staging,
		Heartbeat: dap.Heartbeat{Every: agentapi.HeartbeatInterval, Command: agentapi.HeartbeatCommand},
		Lost: func() string {
			note := ep.TargetNote(context.Background())
			if len(ep.Status.Processes) > 1 {
				if p, ok := ep.ProcessNote(context.Background(), t.PID); ok {
					note = p + "; " + note
				}
			}
			return note
		}}, nil
}

// Describe is the target process for messages: "Java 17.0.15,
// /opt/java/bin/java; JDWP listening (address=127.0.0.1:0)".
func Describe(rt *runtimes.Runtime, t *runtimes.Target) string {
	s := fmt.Sprintf("%s %s, %s", rt.Title, t.Version, t.Exe)
	if t.Detail != "" {
		s += "; " + t.Detail
	}
	return s
}

// forwardedConn is the DAP connection through a forward: closing it closes
// the forward, and losing the forward closes it, so the session sees the
// debugger go away.
type forwardedConn struct {
	net.Conn
	fwd  *forward.Forward
	once sync.Once
}

// Read says, when the connection ended with the forward, that the
// forward was lost and why, rather than "use of closed network connection".
func (c *forwardedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil {
		if lost := c.fwd.Err(); errors.Is(lost, forward.ErrLost) {
			return n, lost
		}
	}
	return n, err
}

func (c *forwardedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { go c.fwd.Close() })
	return err
}
