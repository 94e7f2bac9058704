package attach

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
)

// defaultContainerAnnotation names the container kubectl picks by default.
const defaultContainerAnnotation = "kubectl.kubernetes.io/default-container"

// resolvePod finds the Running pod the target names; for a workload it
// picks the newest Running pod and says which through note.
func resolvePod(ctx context.Context, client kubernetes.Interface, ns, target string, note func(string)) (*corev1.Pod, error) {
	kind, name, err := targetRef(target)
	if err != nil {
		return nil, err
	}
	if kind != "pod" {
		pods, err := workloadPods(ctx, client, ns, kind, name)
		if err != nil {
			return nil, err
		}
		pod := newestRunning(pods)
		if n := countRunning(pods); n > 1 {
			note(fmt.Sprintf("%s/%s: using pod %s (newest of %d Running; \"replicas\": \"all\" debugs each as a child session)", kind, name, pod.Name, n))
		} else {
			note(fmt.Sprintf("%s/%s: using pod %s", kind, name, pod.Name))
		}
		return pod, nil
	}
	pod, err := client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, explainGet(ctx, client, err, ns, "pod", name)
	}
	if pod.Status.Phase != corev1.PodRunning {
		return nil, fmt.Errorf("pod %s/%s is %s, not Running: kdap attaches to a running process (%s)", ns, name, pod.Status.Phase, podReason(pod))
	}
	return pod, nil
}

// workloadPods lists the pods of a deployment, a statefulset or a label
// selector; it fails when none is Running.
func workloadPods(ctx context.Context, client kubernetes.Interface, ns, kind, name string) ([]corev1.Pod, error) {
	var sel labels.Selector
	switch kind {
	case "deployment", "statefulset":
		var ls *metav1.LabelSelector
		if kind == "deployment" {
			dep, err := client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return nil, explainGet(ctx, client, err, ns, kind, name)
			}
			ls = dep.Spec.Selector
		} else {
			sts, err := client.AppsV1().StatefulSets(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return nil, explainGet(ctx, client, err, ns, kind, name)
			}
			ls = sts.Spec.Selector
		}
		var err error
		if sel, err = metav1.LabelSelectorAsSelector(ls); err != nil {
			return nil, err
		}
	default:
		var err error
		if sel, err = labels.Parse(name); err != nil {
			return nil, fmt.Errorf("selector %q: %v (write it as kubectl -l takes it, e.g. selector/app=web)", name, err)
		}
	}
	pods, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, explainGet(ctx, client, err, ns, "pods", "")
	}
	if countRunning(pods.Items) == 0 {
		return nil, fmt.Errorf("%s/%s in namespace %s has no Running pod (%d pods match %s)", kind, name, ns, len(pods.Items), sel)
	}
	return pods.Items, nil
}

func newestRunning(pods []corev1.Pod) *corev1.Pod {
	var best *corev1.Pod
	for i := range pods {
		p := &pods[i]
		if p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil {
			continue
		}
		if best == nil || p.CreationTimestamp.After(best.CreationTimestamp.Time) {
			best = p
		}
	}
	return best
}

func countRunning(pods []corev1.Pod) int {
	n := 0
	for _, p := range pods {
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
			n++
		}
	}
	return n
}

func podReason(p *corev1.Pod) string {
	for _, cs := range p.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil {
			return fmt.Sprintf("container %s: %s", cs.Name, w.Reason)
		}
	}
	if p.Status.Reason != "" {
		return p.Status.Reason
	}
	return "see kubectl describe pod"
}

// explainGet turns a failed get/list into a message that says what to do:
// a missing object with close names, a missing namespace, an RBAC denial,
// an unreachable cluster.
func explainGet(ctx context.Context, client kubernetes.Interface, err error, ns, kind, name string) error {
	var netErr net.Error
	var opErr *net.OpError
	switch {
	case errors.As(err, &opErr) || errors.As(err, &netErr):
		return fmt.Errorf("cannot reach the Kubernetes API server (%v): is the cluster up, and are \"kubeconfig\"/\"context\" right?", err)
	case apierrors.IsForbidden(err):
		verb := "get"
		if name == "" {
			verb = "list"
		}
		return fmt.Errorf("you may not %s %s in namespace %q: RBAC must allow %q on %q (kdap needs get/list/watch on pods, patch on pods/ephemeralcontainers, get and create on pods/portforward; `kdap rbac` prints the Role): %w",
			verb, plural(kind), ns, verb, plural(kind), err)
	case apierrors.IsNotFound(err):
		if _, nsErr := client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); apierrors.IsNotFound(nsErr) {
			return fmt.Errorf("namespace %q does not exist%s", ns, suggest(ctx, func() []string { return namespaceNames(ctx, client) }, ns))
		}
		return fmt.Errorf("%s %q not found in namespace %q%s", kind, name, ns, suggest(ctx, func() []string { return names(ctx, client, ns, kind) }, name))
	}
	return fmt.Errorf("getting %s %s/%s: %w", kind, ns, name, err)
}

func plural(kind string) string {
	if strings.HasSuffix(kind, "s") {
		return kind
	}
	return kind + "s"
}

// suggest returns "; did you mean …?" with up to three names close to want.
func suggest(ctx context.Context, list func() []string, want string) string {
	type scored struct {
		name string
		d    int
	}
	var close []scored
	for _, n := range list() {
		d := distance(strings.ToLower(n), strings.ToLower(want))
		if d <= max(2, len(want)/3) || strings.Contains(n, want) || strings.Contains(want, n) {
			close = append(close, scored{n, d})
		}
	}
	if len(close) == 0 {
		return ""
	}
	sort.Slice(close, func(i, j int) bool {
		return close[i].d < close[j].d || close[i].d == close[j].d && close[i].name < close[j].name
	})
	var out []string
	for i := 0; i < len(close) && i < 3; i++ {
		out = append(out, fmt.Sprintf("%q", close[i].name))
	}
	return "; did you mean " + strings.Join(out, " or ") + "?"
}

func names(ctx context.Context, client kubernetes.Interface, ns, kind string) []string {
	var out []string
	switch kind {
	case "pod":
		pods, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: labels.Everything().String()})
		if err == nil {
			for _, p := range pods.Items {
				out = append(out, p.Name)
			}
		}
	case "deployment":
		deps, err := client.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
		if err == nil {
			for _, d := range deps.Items {
				out = append(out, d.Name)
			}
		}
	case "statefulset":
		sets, err := client.AppsV1().StatefulSets(ns).List(ctx, metav1.ListOptions{})
		if err == nil {
			for _, d := range sets.Items {
				out = append(out, d.Name)
			}
		}
	}
	return out
}

func namespaceNames(ctx context.Context, client kubernetes.Interface) []string {
	nss, err := client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil
	}
	var out []string
	for _, n := range nss.Items {
		out = append(out, n.Name)
	}
	return out
}

// distance is the Levenshtein distance of a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// pickContainer chooses the target container: the one asked for, else the
// default-container annotation, else the only container.
func pickContainer(pod *corev1.Pod, want string) (string, error) {
	var names []string
	for _, c := range pod.Spec.Containers {
		names = append(names, c.Name)
	}
	if want == "" {
		want = pod.Annotations[defaultContainerAnnotation]
	}
	if want == "" {
		if len(names) == 1 {
			return names[0], nil
		}
		return "", fmt.Errorf("pod %s has %d containers (%s): set \"container\" in the launch configuration", pod.Name, len(names), strings.Join(names, ", "))
	}
	for _, n := range names {
		if n == want {
			return want, nil
		}
	}
	return "", fmt.Errorf("container %q is not in pod %s; its containers are: %s", want, pod.Name, strings.Join(names, ", "))
}
