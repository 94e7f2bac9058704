// Package rbac lists the Kubernetes API permissions kdap uses, by feature,
// and makes the Roles that grant exactly them. It is the one list: `kdap
// rbac` prints it as Roles for a platform team, `kdap doctor` checks it
// with SelfSubjectAccessReviews, and the e2e tests prove it sufficient and
// minimal against a real API server.
package rbac

import (
	"fmt"
	"slices"
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Feature is a part of kdap that needs its own permissions.
type Feature struct {
	Name    string // as kdap rbac --feature takes it
	Summary string // what it gives the user
	// Default features are in the Role kdap rbac prints without
	// --feature; the others are asked for by name.
	Default bool
}

// The features, in the order kdap rbac prints them.
var (
	Debug = Feature{"debug", "attach a debugger to a pod, kdap attach, stack dumps, profiles, heap and core dumps", true}
	// Workloads resolve deployment/NAME and statefulset/NAME targets.
	Workloads = Feature{"workloads", "targets named deployment/NAME or statefulset/NAME, and \"replicas\": \"all\"", true}
	Policy    = Feature{"policy", "the namespace's kdap.dev/ policy (stop limits, snapshot-only) and its PodSecurity level, read before injecting", true}
	Events    = Feature{"events", "an Event on the pod for each debug session (the team's record), and the kubelet's reason when the target restarts", true}
	// PullSecrets lets kdap read a target image's configuration from a
	// private registry, for the runtime guess and the target's user.
	PullSecrets = Feature{"pull-secrets", "the pod's image pull secrets, to read a private target image's configuration (the runtime guess, the image's USER)", false}
	Nodes       = Feature{"nodes", "the node's architecture, to read the right image of a multi-architecture target image", false}
	Everywhere  = Feature{"all-namespaces", "kdap targets -A, kdap sessions -A, and namespace names in completion and suggestions", false}
)

// Features lists every feature.
var Features = []Feature{Debug, Workloads, Policy, Events, PullSecrets, Nodes, Everywhere}

// Permission is one resource kdap uses, with the verbs, what for, and what
// happens without them.
type Permission struct {
	Feature  Feature
	Group    string // API group: "" (core) or "apps"
	Resource string // "pods", or "pods/portforward" for a subresource
	Verbs    []string
	// Cluster: the resource is cluster-scoped, or used across namespaces;
	// only a ClusterRole grants it.
	Cluster bool
	Why     string // what kdap does with it
	Without string // what happens without it: "" when the feature fails
}

// Permissions are every permission kdap uses. Debug's are needed to debug
// at all; the others' lack is told and worked around.
var Permissions = []Permission{
	{Feature: Debug, Resource: "pods", Verbs: []string{"get", "list", "watch"},
		Why: "find the target pod, and watch the debugger container start"},
	{Feature: Debug, Resource: "pods/ephemeralcontainers", Verbs: []string{"patch"},
		Why: "add the debugger container to the pod"},
	// Both verbs, measured against Kubernetes 1.36: the WebSocket
	// port-forward is a GET that AuthorizePodWebsocketUpgradeCreatePermission
	// also checks as create, and without get the forward is refused.
	{Feature: Debug, Resource: "pods/portforward", Verbs: []string{"get", "create"},
		Why: "reach the debugger container (a port-forward to its loopback port)"},
	{Feature: Workloads, Group: "apps", Resource: "deployments", Verbs: []string{"get", "list"},
		Why: "resolve deployment/NAME to its newest Running pod, and suggest names", Without: "only pod/NAME and selector/LABELS targets work"},
	{Feature: Workloads, Group: "apps", Resource: "statefulsets", Verbs: []string{"get", "list"},
		Why: "resolve statefulset/NAME to its pods", Without: "only pod/NAME and selector/LABELS targets work"},
	{Feature: Policy, Resource: "namespaces", Verbs: []string{"get"},
		Why:     "read the namespace's kdap.dev/ annotations and PodSecurity level before adding anything",
		Without: "kdap cannot honour the namespace's stop limits or check PodSecurity first: admission decides at the patch, and the user is told"},
	{Feature: Events, Resource: "events", Verbs: []string{"create"},
		Why: "leave an Event on the pod at each session's start and end", Without: "sessions are recorded only in the local log, and the user is told"},
	{Feature: Events, Resource: "events", Verbs: []string{"list"},
		Why: "name the kubelet's reason (a failed probe) when the target restarts under a session", Without: "a restart is told without the kubelet's reason"},
	{Feature: PullSecrets, Resource: "secrets", Verbs: []string{"get"},
		Why:     "read a private target image's configuration with the pod's pull secrets",
		Without: "kdap reads the image with your own registry credentials, or guesses from the pod spec"},
	{Feature: Nodes, Resource: "nodes", Verbs: []string{"get"}, Cluster: true,
		Why: "read the node's architecture and the images it already has", Without: "kdap reads amd64 images of a multi-architecture target image"},
	{Feature: Everywhere, Resource: "namespaces", Verbs: []string{"list"}, Cluster: true,
		Why: "complete and suggest namespace names", Without: "no namespace names in completion and suggestions"},
	{Feature: Everywhere, Resource: "pods", Verbs: []string{"list"}, Cluster: true,
		Why: "kdap targets -A and kdap sessions -A", Without: "list one namespace at a time"},
}

// Required says whether debugging fails without the permission.
func (p Permission) Required() bool { return p.Without == "" && p.Feature == Debug }

// Lookup is the feature named name.
func Lookup(name string) (Feature, bool) {
	for _, f := range Features {
		if f.Name == name {
			return f, true
		}
	}
	return Feature{}, false
}

// Select parses kdap rbac's --feature values: names, "default", "all".
// None is the default features.
func Select(names []string) ([]Feature, error) {
	want := map[string]bool{}
	for _, n := range names {
		switch n {
		case "default":
			for _, f := range Features {
				want[f.Name] = want[f.Name] || f.Default
			}
		case "all":
			for _, f := range Features {
				want[f.Name] = true
			}
		default:
			if _, ok := Lookup(n); !ok {
				return nil, fmt.Errorf("no feature %q: the features are %s, or default, or all", n, strings.Join(featureNames(), ", "))
			}
			want[n] = true
		}
	}
	var out []Feature
	for _, f := range Features {
		if want[f.Name] || (len(names) == 0 && f.Default) {
			out = append(out, f)
		}
	}
	return out, nil
}

func featureNames() []string {
	var names []string
	for _, f := range Features {
		names = append(names, f.Name)
	}
	return names
}

// Of lists the permissions of the features.
func Of(features []Feature) []Permission {
	var out []Permission
	for _, p := range Permissions {
		if slices.Contains(features, p.Feature) {
			out = append(out, p)
		}
	}
	return out
}

// Grant is what kdap rbac prints: a Role in one namespace for the
// namespaced permissions, a ClusterRole for the others, and their
// bindings when a subject is given.
type Grant struct {
	Role               *rbacv1.Role
	RoleBinding        *rbacv1.RoleBinding        // nil without a subject
	ClusterRole        *rbacv1.ClusterRole        // nil when no cluster-scoped feature is chosen
	ClusterRoleBinding *rbacv1.ClusterRoleBinding // nil without a subject or a ClusterRole

	features                []Feature
	roleWhy, clusterRoleWhy [][]string // each rule's permissions' Why, by feature
}

// GrantOptions say what a Grant is for.
type GrantOptions struct {
	Name      string // of the Role and the bindings
	Namespace string
	Features  []Feature
	Subject   *rbacv1.Subject
	// PullSecrets, when set, limits secrets get to these names (the
	// target pods' imagePullSecrets).
	PullSecrets []string
}

// NewGrant makes the Roles and bindings for o's features: one rule per
// permission, verbs of a resource merged, in Permissions' order.
func NewGrant(o GrantOptions) Grant {
	var ns, cl []rbacv1.PolicyRule
	var nsWhy, clWhy [][]string
	for _, p := range Of(o.Features) {
		rule := rbacv1.PolicyRule{APIGroups: []string{p.Group}, Resources: []string{p.Resource}, Verbs: p.Verbs}
		if p.Resource == "secrets" {
			rule.ResourceNames = o.PullSecrets
		}
		why := p.Feature.Name + ": " + p.Why
		if p.Cluster {
			cl, clWhy = merge(cl, clWhy, rule, why)
		} else {
			ns, nsWhy = merge(ns, nsWhy, rule, why)
		}
	}
	g := Grant{features: o.Features, roleWhy: nsWhy, clusterRoleWhy: clWhy, Role: &rbacv1.Role{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "Role"},
		ObjectMeta: metav1.ObjectMeta{Name: o.Name, Namespace: o.Namespace}, Rules: ns,
	}}
	if len(cl) > 0 {
		g.ClusterRole = &rbacv1.ClusterRole{
			TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole"},
			ObjectMeta: metav1.ObjectMeta{Name: o.Name}, Rules: cl,
		}
	}
	if o.Subject == nil {
		return g
	}
	g.RoleBinding = &rbacv1.RoleBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "RoleBinding"},
		ObjectMeta: metav1.ObjectMeta{Name: o.Name, Namespace: o.Namespace},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: o.Name},
		Subjects:   []rbacv1.Subject{*o.Subject},
	}
	if g.ClusterRole != nil {
		g.ClusterRoleBinding = &rbacv1.ClusterRoleBinding{
			TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRoleBinding"},
			ObjectMeta: metav1.ObjectMeta{Name: o.Name},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: o.Name},
			Subjects:   []rbacv1.Subject{*o.Subject},
		}
	}
	return g
}

// merge adds rule, and why it is there, to rules: into the rule of the
// same group, resource and names when there is one.
func merge(rules []rbacv1.PolicyRule, whys [][]string, rule rbacv1.PolicyRule, why string) ([]rbacv1.PolicyRule, [][]string) {
	for i, r := range rules {
		if slices.Equal(r.APIGroups, rule.APIGroups) && slices.Equal(r.Resources, rule.Resources) && slices.Equal(r.ResourceNames, rule.ResourceNames) {
			rules[i].Verbs = append(slices.Clone(r.Verbs), rule.Verbs...)
			whys[i] = append(whys[i], why)
			return rules, whys
		}
	}
	return append(rules, rule), append(whys, []string{why})
}

// ParseSubject parses kdap rbac's subject flags: user NAME, group NAME,
// or a service account NAMESPACE:NAME.
func ParseSubject(user, group, serviceAccount string) (*rbacv1.Subject, error) {
	set := 0
	for _, s := range []string{user, group, serviceAccount} {
		if s != "" {
			set++
		}
	}
	switch {
	case set > 1:
		return nil, fmt.Errorf("--user, --group and --serviceaccount exclude each other: give one (the binding has one subject), or none for the Role alone")
	case user != "":
		return &rbacv1.Subject{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}, nil
	case group != "":
		return &rbacv1.Subject{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind, Name: group}, nil
	case serviceAccount != "":
		ns, name, ok := strings.Cut(serviceAccount, ":")
		if !ok || ns == "" || name == "" {
			return nil, fmt.Errorf("--serviceaccount %q: write it NAMESPACE:NAME, as kubectl create rolebinding does", serviceAccount)
		}
		return &rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: name}, nil
	}
	return nil, nil
}

// SubjectFlag is the kdap rbac flag that names the user the API server
// knows as username: --serviceaccount NS:NAME for a service account,
// --user NAME otherwise (--user YOU when the name is not known).
func SubjectFlag(username string) string {
	if sa, ok := strings.CutPrefix(username, "system:serviceaccount:"); ok {
		return "--serviceaccount " + sa
	}
	if username == "" || username == "unknown" {
		return "--user YOU"
	}
	return "--user " + username
}
