package attach

import (
	"context"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kdap/kdap/inject"
	"github.com/kdap/kdap/runtimes"
)

// Target is one container kdap can attach to, for pickers (`kdap targets`,
// the VS Code extension's quick pick).
type Target struct {
	Namespace string `json:"namespace"`
	Pod       string `json:"pod"`
	Container string `json:"container"`
	Image     string `json:"image"`
	Runtime   string `json:"runtime"` // guessed from image and command, as "runtime": "auto" does
	Default   bool   `json:"default"` // kdap picks this container when "container" is not set
}

// ListTargets lists the containers of Running pods in namespace (every
// namespace when it is empty), sorted by namespace, pod and container.
func ListTargets(ctx context.Context, cfg Config, namespace string) ([]Target, error) {
	pods, err := listPods(ctx, cfg, namespace)
	if err != nil {
		return nil, err
	}
	out := []Target{}
	for _, p := range pods.Items {
		if p.Status.Phase != corev1.PodRunning {
			continue
		}
		def, _ := pickContainer(&p, "")
		for _, c := range p.Spec.Containers {
			rt, _ := runtimes.Guess(runtimes.Evidence{Image: c.Image, Command: append(append([]string(nil), c.Command...), c.Args...)})
			out = append(out, Target{Namespace: p.Namespace, Pod: p.Name, Container: c.Name, Image: c.Image, Runtime: rt.Name, Default: c.Name == def})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		if a.Pod != b.Pod {
			return a.Pod < b.Pod
		}
		return a.Container < b.Container
	})
	return out, nil
}

// TargetNames lists what a TARGET argument may name in namespace, for
// shell completion: pod/NAME for each Running pod, deployment/NAME for
// each deployment.
func TargetNames(ctx context.Context, cfg Config, namespace string) ([]string, error) {
	client, ns, err := newClient(cfg, Args{Namespace: namespace})
	if err != nil {
		return nil, err
	}
	pods, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodRunning {
			out = append(out, "pod/"+p.Name)
		}
	}
	if deps, err := client.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{}); err == nil {
		for _, d := range deps.Items {
			out = append(out, "deployment/"+d.Name)
		}
	}
	sort.Strings(out)
	return out, nil
}

// NamespaceNames lists the cluster's namespaces, for shell completion.
func NamespaceNames(ctx context.Context, cfg Config) ([]string, error) {
	client, _, err := newClient(cfg, Args{})
	if err != nil {
		return nil, err
	}
	list, err := client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range list.Items {
		out = append(out, n.Name)
	}
	return out, nil
}

// newClient is a client of the cluster cfg and args name, and the
// namespace to use.
func newClient(cfg Config, args Args) (kubernetes.Interface, string, error) {
	restCfg, ns, err := clientConfig(cfg, args)
	if err != nil {
		return nil, "", err
	}
	client, err := kubernetes.NewForConfig(restCfg)
	return client, ns, err
}

// listPods lists the pods of namespace (every namespace when it is empty).
func listPods(ctx context.Context, cfg Config, namespace string) (*corev1.PodList, error) {
	client, _, err := newClient(cfg, Args{})
	if err != nil {
		return nil, err
	}
	pods, err := client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, explainGet(ctx, client, err, namespace, "pods", "")
	}
	return pods, nil
}

// Session is a live kdap agent in a pod: a debugger container that is
// Running, with who added it (as its spec records) and since when.
type Session struct {
	Namespace  string    `json:"namespace"`
	Pod        string    `json:"pod"`
	Container  string    `json:"container"` // the target container
	Agent      string    `json:"agent"`
	Runtime    string    `json:"runtime"`
	Since      time.Time `json:"since"`
	InjectedBy string    `json:"injectedBy"` // "" when a kdap older than the record added it
}

// ListSessions lists the live kdap agents in namespace (every namespace
// when it is empty), oldest first.
func ListSessions(ctx context.Context, cfg Config, namespace string) ([]Session, error) {
	pods, err := listPods(ctx, cfg, namespace)
	if err != nil {
		return nil, err
	}
	out := []Session{}
	for _, p := range pods.Items {
		for _, a := range inject.LiveAgents(&p) {
			out = append(out, Session{Namespace: p.Namespace, Pod: p.Name, Container: a.Target, Agent: a.Name,
				Runtime: a.Runtime, Since: a.Since, InjectedBy: a.InjectedBy})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Since.Before(out[j].Since) })
	return out, nil
}
