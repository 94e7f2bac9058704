package inject

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
)

// Add patches ec into the pod's ephemeral containers with one call to the
// ephemeralcontainers subresource. API failures come back as errors that
// say what to do.
func Add(ctx context.Context, client kubernetes.Interface, pod *corev1.Pod, ec corev1.EphemeralContainer) error {
	patch, err := json.Marshal(map[string]any{
		"spec": map[string]any{"ephemeralContainers": []corev1.EphemeralContainer{ec}},
	})
	if err != nil {
		return err
	}
	_, err = client.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "ephemeralcontainers")
	if err == nil {
		return nil
	}
	var status *apierrors.StatusError
	switch {
	case apierrors.IsNotFound(err) && errors.As(err, &status) && status.ErrStatus.Details != nil && status.ErrStatus.Details.Name == "":
		// The subresource itself is missing: the feature is off.
		return fmt.Errorf("ephemeral containers are disabled in this cluster (Kubernetes < 1.23 or the EphemeralContainers feature gate is off); kdap needs them: %w", err)
	case apierrors.IsNotFound(err):
		return fmt.Errorf("pod %s/%s disappeared before the debugger could be added: %w", pod.Namespace, pod.Name, err)
	case apierrors.IsForbidden(err):
		return explainForbidden(ctx, client, pod, ec, err)
	case apierrors.IsInvalid(err):
		return fmt.Errorf("the cluster rejected the debugger container for pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return fmt.Errorf("adding the debugger container to pod %s/%s: %w", pod.Namespace, pod.Name, err)
}

// explainForbidden tells an RBAC denial (kdap's user may not patch
// pods/ephemeralcontainers) from an admission denial (PodSecurity or a
// policy webhook rejected the container) by asking the API server.
func explainForbidden(ctx context.Context, client kubernetes.Interface, pod *corev1.Pod, ec corev1.EphemeralContainer, err error) error {
	allowed, checkErr := CanI(ctx, client, pod.Namespace, "patch", "pods", "ephemeralcontainers")
	if checkErr == nil && !allowed {
		return fmt.Errorf("you may not add debug containers in namespace %q: RBAC is missing verb \"patch\" on resource \"pods/ephemeralcontainers\" "+
			"(ask for a Role granting it; kdap also needs get/list/watch on pods and get and create on pods/portforward; `kdap rbac` prints the Role): %w", pod.Namespace, err)
	}
	why := "PodSecurity or a policy webhook"
	sc := ec.SecurityContext
	switch {
	case sc != nil && sc.Capabilities != nil && slices.Contains(sc.Capabilities.Add, "SYS_PTRACE"):
		why += "; the debugger container asks for the SYS_PTRACE capability, which only PodSecurity privileged allows"
	case sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot:
		why += "; the debugger container runs as root (the pod spec names no non-root runAsUser for the target), which PodSecurity restricted forbids"
	}
	return fmt.Errorf("the cluster's admission control rejected the debugger container in namespace %q (%s): %w", pod.Namespace, why, err)
}

// CanI asks the API server whether the current user may do verb on
// resource[/subresource] in namespace.
func CanI(ctx context.Context, client kubernetes.Interface, namespace, verb, resource, subresource string) (bool, error) {
	review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
		ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: namespace, Verb: verb, Resource: resource, Subresource: subresource},
	}}
	res, err := client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
	if err != nil {
		return false, err
	}
	return res.Status.Allowed, nil
}

// WaitRunning watches the pod until the ephemeral container name runs. It
// fails at once, with the kubelet's reason, when the container cannot start
// (image pull, create error) or has exited (with its termination message,
// which holds the end of its log).
func WaitRunning(ctx context.Context, client kubernetes.Interface, namespace, pod, name string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	selector := fields.OneTermEqualSelector("metadata.name", pod).String()
	pods := client.CoreV1().Pods(namespace)
	lw := &cache.ListWatch{ // through the typed client, so that a fake clientset serves it too
		ListFunc: func(o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = selector
			return pods.List(ctx, o)
		},
		WatchFunc: func(o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = selector
			return pods.Watch(ctx, o)
		},
	}
	var last string
	_, err := watchtools.UntilWithSync(ctx, lw, &corev1.Pod{}, nil, func(e watch.Event) (bool, error) {
		if e.Type == watch.Deleted {
			return false, fmt.Errorf("pod %s/%s was deleted while the debugger was starting", namespace, pod)
		}
		p, ok := e.Object.(*corev1.Pod)
		if !ok {
			return false, nil
		}
		for _, st := range p.Status.EphemeralContainerStatuses {
			if st.Name != name {
				continue
			}
			switch {
			case st.State.Running != nil:
				return true, nil
			case st.State.Terminated != nil:
				t := st.State.Terminated
				return false, exited(name, t)
			case st.State.Waiting != nil:
				w := st.State.Waiting
				last = w.Reason
				if isImageProblem(w.Reason) {
					return false, fmt.Errorf("the debugger image %q cannot be used on node %s: %s: %s (use an image the node can pull: set \"image\" in the launch configuration, or kdap's --image-go/--image-python)",
						st.Image, p.Spec.NodeName, w.Reason, w.Message)
				}
				if w.Reason == "CreateContainerError" || w.Reason == "CreateContainerConfigError" || w.Reason == "RunContainerError" {
					return false, fmt.Errorf("the node could not start the debugger container: %s: %s", w.Reason, w.Message)
				}
			}
		}
		return false, nil
	})
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, watchtools.ErrWatchClosed) && ctx.Err() != nil {
		if last == "" {
			last = "not scheduled by the kubelet yet"
		}
		return fmt.Errorf("the debugger container %s in pod %s/%s is not running after %s (%s): `kubectl describe pod -n %s %s` shows what the node is doing", name, namespace, pod, timeout, last, namespace, pod)
	}
	return err
}

func isImageProblem(reason string) bool {
	switch reason {
	case "ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName", "ImageInspectError", "RegistryUnavailable":
		return true
	}
	return false
}

// AgentExitedError is an agent container that ended; Message is its
// termination message, which holds the end of its log when it failed.
type AgentExitedError struct {
	Name     string
	ExitCode int32
	Reason   string
	Message  string
}

// exited is the error for an agent container that has terminated.
func exited(name string, t *corev1.ContainerStateTerminated) *AgentExitedError {
	return &AgentExitedError{Name: name, ExitCode: t.ExitCode, Reason: t.Reason, Message: strings.TrimSpace(t.Message)}
}

func (e *AgentExitedError) Error() string {
	msg := fmt.Sprintf("the debugger container %s exited (%s, exit code %d)", e.Name, e.Reason, e.ExitCode)
	if e.Message != "" {
		msg += ": " + e.Message
	}
	return msg
}

// CheckAlive returns an *AgentExitedError if the agent container has ended,
// nil while it runs. kdap calls it when the agent does not answer: an agent
// that fails right after starting is briefly Running.
func CheckAlive(ctx context.Context, client kubernetes.Interface, namespace, pod, name string) error {
	p, err := client.CoreV1().Pods(namespace).Get(ctx, pod, metav1.GetOptions{})
	if err != nil {
		return err
	}
	for _, st := range p.Status.EphemeralContainerStatuses {
		if st.Name == name && st.State.Terminated != nil {
			t := st.State.Terminated
			return exited(name, t)
		}
	}
	return nil
}
