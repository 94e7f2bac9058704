//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/kdap/kdap/forward"
	"github.com/kdap/kdap/test/cluster/localcluster"
)

var nsCounter atomic.Int64

// newNamespace creates a namespace for one test and removes it (pods first,
// then the namespace through its finalize subresource, since no namespace
// controller runs) when the test ends. It starts t's watchdog too (startWatchdog).
func newNamespace(t testing.TB, labels map[string]string) string {
	t.Helper()
	startWatchdog(t)
	ctx := context.Background()
	name := fmt.Sprintf("e2e-%d-%d", time.Now().Unix()%100000, nsCounter.Add(1))
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if _, err := env.clientset.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	t.Cleanup(func() { deleteNamespace(t, name) })
	return name
}

func deleteNamespace(t testing.TB, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pods := env.clientset.CoreV1().Pods(name)
	zero := int64(0)
	if err := pods.DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{}); err != nil {
		t.Errorf("delete pods in %s: %v", name, err)
	}
	for ctx.Err() == nil {
		list, err := pods.List(ctx, metav1.ListOptions{})
		if err == nil && len(list.Items) == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	nsc := env.clientset.CoreV1().Namespaces()
	if err := nsc.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Errorf("delete namespace %s: %v", name, err)
		return
	}
	ns, err := nsc.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return
	}
	ns.Spec.Finalizers = nil
	if _, err := nsc.Finalize(ctx, ns, metav1.UpdateOptions{}); err != nil {
		t.Errorf("finalize namespace %s: %v", name, err)
	}
}

// createPod creates a one-container pod ("app") on the node from a loaded
// image and waits until it is Running.
func createPod(t testing.TB, ns, name, image string, args ...string) *corev1.Pod {
	t.Helper()
	return createPodWith(t, ns, name, image, func(*corev1.Pod) {}, args...)
}

// createPodWith is createPod with a change to the pod spec before creation.
func createPodWith(t testing.TB, ns, name, image string, edit func(*corev1.Pod), args ...string) *corev1.Pod {
	t.Helper()
	no, grace := false, int64(1)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{
			NodeName:                      env.cluster.NodeName(),
			AutomountServiceAccountToken:  &no,
			TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{
				Name: "app", Image: image, Args: args, ImagePullPolicy: corev1.PullNever,
			}},
		},
	}
	edit(pod)
	ctx := context.Background()
	if _, err := env.clientset.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create pod %s/%s: %v", ns, name, err)
	}
	t.Cleanup(func() { // what the debugger saw, for a failed test
		if t.Failed() {
			t.Logf("the debugger containers' logs of pod %s/%s:\n%s", ns, name, agentLogs(t, ns, name))
		}
	})
	return waitPod(t, ns, name, 60*time.Second, "Running", func(p *corev1.Pod) (bool, error) {
		for _, cs := range p.Status.ContainerStatuses {
			if w := cs.State.Waiting; w != nil && isFatalWaitReason(w.Reason) {
				return false, fmt.Errorf("container %s: %s: %s", cs.Name, w.Reason, w.Message)
			}
		}
		return p.Status.Phase == corev1.PodRunning, nil
	})
}

// isFatalWaitReason reports kubelet reasons a container will not recover from.
func isFatalWaitReason(reason string) bool {
	switch reason {
	case "ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName",
		"CreateContainerConfigError", "CreateContainerError", "RunContainerError":
		return true
	}
	return false
}

// waitPod watches one pod until cond is true (or returns an error).
func waitPod(t testing.TB, ns, name string, timeout time.Duration, what string, cond func(*corev1.Pod) (bool, error)) *corev1.Pod {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	lw := cache.NewListWatchFromClient(env.clientset.CoreV1().RESTClient(), "pods", ns,
		fields.OneTermEqualSelector("metadata.name", name))
	ev, err := watchtools.UntilWithSync(ctx, lw, &corev1.Pod{}, nil, func(e watch.Event) (bool, error) {
		if e.Type == watch.Deleted {
			return false, fmt.Errorf("pod %s/%s was deleted", ns, name)
		}
		p, ok := e.Object.(*corev1.Pod)
		if !ok {
			return false, nil
		}
		return cond(p)
	})
	if err != nil {
		t.Fatalf("waiting for pod %s/%s to be %s: %v", ns, name, what, err)
	}
	return ev.Object.(*corev1.Pod)
}

// waitLog waits (30 s at most) until the pod's app container has logged
// text — that it serves: a forward to a port nobody listens on yet would
// end at the first connection.
func waitLog(t testing.TB, ns, pod, text string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(podLogs(t, ns, pod, "app"), text); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s/%s did not log %q within 30 s", ns, pod, text)
		}
	}
}

// podLogs returns a container's log.
func podLogs(t testing.TB, ns, pod, container string) string {
	t.Helper()
	b, err := env.clientset.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container}).DoRaw(context.Background())
	if err != nil {
		t.Fatalf("logs of %s/%s[%s]: %v", ns, pod, container, err)
	}
	return string(b)
}

// dialerKinds are the ways kdap can forward: Kubernetes's websocket
// port-forward protocol ("channel"), client-go's three stream dialers, and
// kdap's own order of them ("kdap").
var dialerKinds = []string{"channel", "websocket", "spdy", "fallback", "kdap"}

// portForwardDialer builds the dialer of the given kind for a pod.
func portForwardDialer(t *testing.T, ns, pod, kind string) *forward.Dialer {
	t.Helper()
	u := forward.URL(env.clientset, ns, pod)
	var d httpstream.Dialer
	var err error
	switch kind {
	case "channel":
		return must(t)(forward.ChannelDialer(env.rest, u))
	case "kdap":
		return must(t)(forward.NewDialer(env.rest, u))
	case "websocket":
		d, err = forward.WebsocketDialer(env.rest, u)
	case "spdy":
		d, err = forward.SPDYDialer(env.rest, u)
	case "fallback":
		d, err = forward.FallbackDialer(env.rest, u)
	default:
		err = fmt.Errorf("unknown dialer kind %q", kind)
	}
	if err != nil {
		t.Fatal(err)
	}
	return forward.Streams(d)
}

// must fails t on a constructor's error.
func must(t testing.TB) func(*forward.Dialer, error) *forward.Dialer {
	return func(d *forward.Dialer, err error) *forward.Dialer {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
}

// forwardPort forwards 127.0.0.1:<random> to a pod port until the test ends.
func forwardPort(t testing.TB, dialer *forward.Dialer, podPort int) *forward.Forward {
	t.Helper()
	f, err := forward.Start(context.Background(), dialer, 0, podPort)
	if err != nil {
		t.Fatalf("port-forward to %d: %v", podPort, err)
	}
	t.Cleanup(f.Close)
	return f
}

func httpClient() *http.Client { return &http.Client{Timeout: 60 * time.Second} }

// httpGet fetches a URL and returns its body; any non-200 fails the test.
func httpGet(t *testing.T, u string) string {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", u, resp.Status, b)
	}
	return string(b)
}

// kubeconfigFor is a kubeconfig for the test cluster with a client
// certificate (from env.cluster.IssueUser).
func kubeconfigFor(t *testing.T, certPEM, keyPEM []byte) *clientcmdapi.Config {
	t.Helper()
	return localcluster.Kubeconfig(env.rest.Host, env.rest.TLSClientConfig.CAData, "user", certPEM, keyPEM)
}
