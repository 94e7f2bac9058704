//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	godap "github.com/google/go-dap"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"

	"github.com/kdap/kdap/doctor"
	"github.com/kdap/kdap/rbac"
	"github.com/kdap/kdap/test/fixtures"
)

// TestTheShippedRoleIsSufficientAndMinimal: a service account bound to
// what `kdap rbac` prints — applied as printed — debugs a Go pod, kdap
// doctor finds nothing blocking for it, and it may do nothing else; with
// any one required verb taken from the Role, kdap doctor blocks on exactly
// that row and an attach is refused naming the verb, with nothing added
// to the pod.
func TestTheShippedRoleIsSufficientAndMinimal(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, nil)
	if _, err := env.clientset.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "dev"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	role := applyKdapRBAC(t, ns, "--serviceaccount", ns+":dev")
	kubeconfig, sa := serviceAccountKubeconfig(t, ns, "dev")

	// Each required verb in turn is taken away, each on a pod of its own
	// (no agent there to reuse).
	type drop struct {
		p    rbac.Permission
		verb string
		pod  string
	}
	var drops []drop
	for _, p := range rbac.Permissions {
		for _, verb := range p.Verbs {
			if p.Required() {
				drops = append(drops, drop{p, verb, fmt.Sprintf("drop-%d", len(drops))})
			}
		}
	}
	createPod(t, ns, "gohttp", fixtures.GoHTTPImage)
	for _, d := range drops {
		createPod(t, ns, d.pod, fixtures.GoHTTPImage)
	}

	t.Run("doctor finds nothing blocking", func(t *testing.T) {
		rep := doctorAs(t, kubeconfig, "pod/gohttp", "-n", ns)
		if n := rep.Blocking(); n != 0 {
			t.Errorf("%d checks block: %+v", n, rep.Checks)
		}
		for _, c := range rep.Checks {
			feature := strings.Split(c.Detail, ":")[0]
			if f, ok := rbac.Lookup(feature); ok && f.Default && c.Result != doctor.OK {
				t.Errorf("the Role grants feature %s, but doctor says %+v", feature, c)
			}
		}
	})

	t.Run("it debugs", func(t *testing.T) {
		svc := serviceForward(t, ns, "gohttp")
		root, mainGo := localCopy(t)
		line := lineOf(t, mainGo, "message := fmt.Sprintf")
		k := startKdap(t)
		c := attachSessionWith(t, k, map[string]any{"target": "pod/gohttp", "namespace": ns, "localRoot": root, "kubeconfig": kubeconfig}, mainGo, line)
		reply := getAsync(fmt.Sprintf("http://%s/hello?name=role", svc))
		_, frame := expectStop(t, c, mainGo, line)
		if vars := locals(t, c, frame); vars["name"] != `"role"` {
			t.Errorf("local name = %q, want \"role\"", vars["name"])
		}
		c.ExpectResponse(t, c.Send("continue", godap.ContinueArguments{ThreadId: 0}))
		expectReply(t, reply, "hello, role", 10*time.Second)
		if console := c.Console(); strings.Contains(console, "leaves no Event") || strings.Contains(console, "could not read namespace") {
			t.Errorf("the Role's events or policy feature did not work:\n%s", console)
		}
		c.ExpectResponse(t, c.Send("disconnect", godap.DisconnectArguments{}))
	})

	t.Run("it may do nothing else", func(t *testing.T) {
		if err := sa.CoreV1().Pods(ns).Delete(ctx, "gohttp", metav1.DeleteOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("the service account deleting a pod: %v, want Forbidden", err)
		}
		for _, a := range []authorizationv1.ResourceAttributes{
			{Namespace: ns, Verb: "create", Resource: "pods", Subresource: "exec"},
			{Namespace: ns, Verb: "create", Resource: "pods", Subresource: "attach"},
			{Namespace: ns, Verb: "patch", Resource: "pods"},
			{Namespace: ns, Verb: "update", Resource: "pods"},
			{Namespace: ns, Verb: "create", Resource: "pods"},
			{Namespace: ns, Verb: "get", Resource: "secrets"},
			{Namespace: ns, Verb: "get", Resource: "pods", Subresource: "log"},
			{Namespace: ns, Verb: "patch", Group: "apps", Resource: "deployments"},
			{Namespace: "default", Verb: "get", Resource: "pods"},
			{Namespace: "default", Verb: "patch", Resource: "pods", Subresource: "ephemeralcontainers"},
			{Verb: "get", Resource: "nodes"},
		} {
			if allowed(t, sa, a) {
				t.Errorf("the service account may %s %s/%s in %q", a.Verb, a.Resource, a.Subresource, a.Namespace)
			}
		}
	})

	for _, d := range drops {
		p, verb, target := d.p, d.verb, d.pod
		resource, sub, _ := strings.Cut(p.Resource, "/")
		t.Run("without "+verb+" "+p.Resource, func(t *testing.T) {
			setRole(t, sa, role, ns, resource, sub, verb, false)
			defer setRole(t, sa, role, ns, resource, sub, verb, true)
			rep := doctorAs(t, kubeconfig, "pod/"+target, "-n", ns)
			var blocking []string
			for _, c := range rep.Checks {
				if c.Result == doctor.Blocks {
					blocking = append(blocking, c.Name)
				}
			}
			want := []string{strings.Join(p.Verbs, ",") + " " + p.Resource}
			if verb == "get" && p.Resource == "pods" {
				want = append(want, "target") // without get, the target cannot be found either
			}
			if !slices.Equal(blocking, want) {
				t.Errorf("doctor blocks on %q, want %q", blocking, want)
			}
			k := startKdap(t)
			msg := attachError(t, k, map[string]any{"target": "pod/" + target, "namespace": ns, "kubeconfig": kubeconfig, "runtime": "go"})
			if !strings.Contains(msg, `"`+verb+`"`) || !strings.Contains(msg, p.Resource) {
				t.Errorf("the refusal does not name %q on %s: %s", verb, p.Resource, msg)
			}
			if strings.Contains(msg, "kdap rbac -n "+ns+" ") && !strings.Contains(msg, "kdap rbac -n "+ns+" --serviceaccount "+ns+":dev") {
				t.Errorf("the refusal's kdap rbac command does not name the service account: %s", msg)
			}
			if n := ephemeralCount(t, ns, target); n != 0 {
				t.Errorf("%d debugger containers were added to pod %s", n, target)
			}
		})
	}
}

// TestDoctorOnAHealthyTargetAndOnAMissingVerb: as the cluster's admin
// kdap doctor passes a Go target (the image on the suite's registry, the
// guess from the pod spec) and exits 0; for a user who may not patch
// pods/ephemeralcontainers it exits non-zero, the row naming the fix.
func TestDoctorOnAHealthyTargetAndOnAMissingVerb(t *testing.T) {
	ns := newNamespace(t, nil)
	createPod(t, ns, "gohttp", fixtures.GoHTTPImage)

	out, err := kdapCommand(t, "doctor", "pod/gohttp", "-n", ns)
	if err != nil {
		t.Fatalf("kdap doctor on a healthy target: %v", err)
	}
	for _, want := range []string{"CHECK", "debugger image", "runtime", "PodSecurity", "patch pods/ephemeralcontainers"} {
		if !strings.Contains(out, want) {
			t.Errorf("the table has no %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, string(doctor.Blocks)) || strings.Contains(out, "warn") {
		t.Errorf("the cluster's admin may do everything, but:\n%s", out)
	}
	if n := ephemeralCount(t, ns, "gohttp"); n != 0 {
		t.Errorf("kdap doctor added %d containers", n)
	}

	userClient(t, ns, "viewer", rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods", "pods/portforward"}, Verbs: []string{"get", "list", "watch", "create"}})
	certPEM, keyPEM, err := env.cluster.IssueUser("viewer")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kubeconfigFor(t, certPEM, keyPEM), file); err != nil {
		t.Fatal(err)
	}
	out, err = kdapCommandAs(t, file, "doctor", "pod/gohttp", "-n", ns)
	if err == nil || !strings.Contains(err.Error(), "exit status 1") || !strings.Contains(err.Error(), "1 check blocks debugging pod/gohttp") {
		t.Errorf("kdap doctor with a verb missing: %v, want exit status 1 and the count", err)
	}
	if !slices.ContainsFunc(strings.Split(out, "\n"), func(l string) bool {
		return strings.HasPrefix(l, "patch pods/ephemeralcontainers ") && strings.Contains(l, string(doctor.Blocks))
	}) {
		t.Errorf("patch pods/ephemeralcontainers does not block:\n%s", out)
	}
	for _, want := range []string{"viewer may not patch pods/ephemeralcontainers in namespace " + ns,
		"kdap rbac -n " + ns + " --feature debug --user viewer", "PodSecurity"} {
		if !strings.Contains(out, want) {
			t.Errorf("the table has no %q:\n%s", want, out)
		}
	}
}

// applyKdapRBAC applies what `kdap rbac -n ns ARGS…` prints, as kubectl
// apply would, and returns the Role.
func applyKdapRBAC(t *testing.T, ns string, args ...string) *rbacv1.Role {
	t.Helper()
	ctx := context.Background()
	out, err := exec.Command(env.kdap, append([]string{"rbac", "-n", ns}, args...)...).Output()
	if err != nil {
		t.Fatalf("kdap rbac: %v", err)
	}
	t.Logf("kdap rbac:\n%s", out)
	var role *rbacv1.Role
	for _, doc := range strings.Split(string(out), "\n---\n") {
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatal(err)
		}
		switch meta.Kind {
		case "Role":
			role = &rbacv1.Role{}
			if err := yaml.UnmarshalStrict([]byte(doc), role); err != nil {
				t.Fatal(err)
			}
			if role, err = env.clientset.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		case "RoleBinding":
			var rb rbacv1.RoleBinding
			if err := yaml.UnmarshalStrict([]byte(doc), &rb); err != nil {
				t.Fatal(err)
			}
			if _, err := env.clientset.RbacV1().RoleBindings(ns).Create(ctx, &rb, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("kdap rbac printed a %s, which the default features need not", meta.Kind)
		}
	}
	return role
}

// serviceAccountKubeconfig writes a kubeconfig with a token of the
// service account (TokenRequest) and returns it with a client.
func serviceAccountKubeconfig(t *testing.T, ns, name string) (string, kubernetes.Interface) {
	t.Helper()
	expires := int64(3600)
	tok, err := env.clientset.CoreV1().ServiceAccounts(ns).CreateToken(context.Background(), name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expires}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["kdap-test"] = &clientcmdapi.Cluster{Server: env.rest.Host, CertificateAuthorityData: env.rest.TLSClientConfig.CAData}
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: tok.Status.Token}
	cfg.Contexts["kdap-test"] = &clientcmdapi.Context{Cluster: "kdap-test", AuthInfo: name, Namespace: ns}
	cfg.CurrentContext = "kdap-test"
	file := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, file); err != nil {
		t.Fatal(err)
	}
	rc, err := clientcmd.NewDefaultClientConfig(*cfg, nil).ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	return file, kubernetes.NewForConfigOrDie(rc)
}

// allowed asks the API server, as client, whether it may do a.
func allowed(t *testing.T, client kubernetes.Interface, a authorizationv1.ResourceAttributes) bool {
	t.Helper()
	r, err := client.AuthorizationV1().SelfSubjectAccessReviews().Create(context.Background(),
		&authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &a}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return r.Status.Allowed
}

// setRole takes verb on resource[/sub] out of the Role (grant false) or
// puts it back, and waits until the API server's authorizer sees it.
func setRole(t *testing.T, sa kubernetes.Interface, role *rbacv1.Role, ns, resource, sub, verb string, grant bool) {
	t.Helper()
	ctx := context.Background()
	edited := role.DeepCopy()
	edited.ResourceVersion = ""
	full := strings.TrimSuffix(resource+"/"+sub, "/")
	if !grant {
		edited.Rules = nil
		for _, r := range role.Rules {
			if slices.Equal(r.APIGroups, []string{""}) && slices.Equal(r.Resources, []string{full}) {
				r.Verbs = slices.DeleteFunc(slices.Clone(r.Verbs), func(v string) bool { return v == verb })
			}
			if len(r.Verbs) > 0 {
				edited.Rules = append(edited.Rules, r)
			}
		}
	}
	current, err := env.clientset.RbacV1().Roles(ns).Get(ctx, role.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	edited.ResourceVersion = current.ResourceVersion
	if _, err := env.clientset.RbacV1().Roles(ns).Update(ctx, edited, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	a := authorizationv1.ResourceAttributes{Namespace: ns, Verb: verb, Resource: resource, Subresource: sub}
	for deadline := time.Now().Add(10 * time.Second); allowed(t, sa, a) != grant; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the authorizer does not see %s %s granted=%v after 10s", verb, full, grant)
		}
	}
}

// doctorAs runs kdap doctor -o json with kubeconfig and returns its
// report; a non-zero exit is expected exactly when a check blocks.
func doctorAs(t *testing.T, kubeconfig string, args ...string) doctor.Report {
	t.Helper()
	out, err := kdapCommandAs(t, kubeconfig, append([]string{"doctor", "-o", "json"}, args...)...)
	var rep doctor.Report
	if jerr := json.Unmarshal([]byte(out), &rep); jerr != nil {
		t.Fatalf("kdap doctor -o json printed %q (%v): %v", out, err, jerr)
	}
	if (err != nil) != (rep.Blocking() > 0) {
		t.Errorf("kdap doctor exited with %v and %d blocking checks", err, rep.Blocking())
	}
	return rep
}
