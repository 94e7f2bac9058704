package rbac

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

func TestSelect(t *testing.T) {
	for _, tc := range []struct {
		names []string
		want  []Feature
		err   string
	}{
		{nil, []Feature{Debug, Workloads, Policy, Events}, ""},
		{[]string{"debug"}, []Feature{Debug}, ""},
		{[]string{"default", "nodes"}, []Feature{Debug, Workloads, Policy, Events, Nodes}, ""},
		{[]string{"all"}, Features, ""},
		{[]string{"debug", "exec"}, nil, `no feature "exec": the features are debug, workloads,`},
	} {
		got, err := Select(tc.names)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Select(%q) = %v, want an error with %q", tc.names, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Select(%q) = %v, %v; want %v", tc.names, got, err, tc.want)
		}
	}
}

// TestTheYAMLIsTheGrant: what kdap rbac prints parses back to the very
// objects NewGrant made, so kubectl apply gets what the tests prove.
func TestTheYAMLIsTheGrant(t *testing.T) {
	features, _ := Select([]string{"all"})
	sa, err := ParseSubject("", "", "ci:deployer")
	if err != nil {
		t.Fatal(err)
	}
	g := NewGrant(GrantOptions{Name: "kdap", Namespace: "shop", Features: features, Subject: sa, PullSecrets: []string{"regcred"}})
	var out bytes.Buffer
	if err := g.WriteYAML(&out); err != nil {
		t.Fatal(err)
	}
	docs := strings.Split(out.String(), "\n---\n")
	if len(docs) != 4 {
		t.Fatalf("%d YAML documents, want 4:\n%s", len(docs), out.String())
	}
	var role rbacv1.Role
	var rb rbacv1.RoleBinding
	var cr rbacv1.ClusterRole
	var crb rbacv1.ClusterRoleBinding
	for i, into := range []any{&role, &rb, &cr, &crb} {
		if err := yaml.UnmarshalStrict([]byte(docs[i]), into); err != nil {
			t.Fatalf("document %d: %v\n%s", i, err, docs[i])
		}
	}
	for i, pair := range [][2]any{{&role, g.Role}, {&rb, g.RoleBinding}, {&cr, g.ClusterRole}, {&crb, g.ClusterRoleBinding}} {
		if !reflect.DeepEqual(pair[0], pair[1]) {
			t.Errorf("document %d parses to\n%+v\nwant\n%+v", i, pair[0], pair[1])
		}
	}
	if want := (rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods/portforward"}, Verbs: []string{"get", "create"}}); !hasRule(role.Rules, want) {
		t.Errorf("the Role has no rule %+v: %+v", want, role.Rules)
	}
	if want := (rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{"regcred"}, Verbs: []string{"get"}}); !hasRule(role.Rules, want) {
		t.Errorf("the Role has no rule %+v: %+v", want, role.Rules)
	}
	if want := (rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list"}}); !hasRule(cr.Rules, want) || hasRule(role.Rules, want) {
		t.Errorf("listing pods everywhere is not in the ClusterRole alone: %+v %+v", cr.Rules, role.Rules)
	}
	if !strings.Contains(out.String(), "# debug: add the debugger container to the pod\n- apiGroups: [\"\"]\n  resources: [\"pods/ephemeralcontainers\"]") {
		t.Errorf("the rules are not said what they are for:\n%s", out.String())
	}
}

func TestDefaultGrantIsOneRole(t *testing.T) {
	features, _ := Select(nil)
	g := NewGrant(GrantOptions{Name: "kdap", Namespace: "shop", Features: features})
	if g.ClusterRole != nil || g.RoleBinding != nil {
		t.Errorf("the default grant without a subject is not a Role alone: %+v", g)
	}
	var out bytes.Buffer
	g.WriteYAML(&out)
	if strings.Contains(out.String(), "---") || strings.Contains(out.String(), `"secrets"`) {
		t.Errorf("the default grant:\n%s", out.String())
	}
}

func TestParseSubject(t *testing.T) {
	if s, err := ParseSubject("alice", "", ""); err != nil || s.Kind != rbacv1.UserKind || s.Name != "alice" {
		t.Errorf("user: %+v %v", s, err)
	}
	if _, err := ParseSubject("alice", "devs", ""); err == nil {
		t.Error("a user and a group were taken together")
	}
	if _, err := ParseSubject("", "", "deployer"); err == nil || !strings.Contains(err.Error(), "NAMESPACE:NAME") {
		t.Errorf("a service account without a namespace: %v", err)
	}
}

func hasRule(rules []rbacv1.PolicyRule, want rbacv1.PolicyRule) bool {
	for _, r := range rules {
		if reflect.DeepEqual(r, want) {
			return true
		}
	}
	return false
}

func TestSubjectFlag(t *testing.T) {
	for user, want := range map[string]string{
		"system:serviceaccount:shop:ci": "--serviceaccount shop:ci",
		"alice@example.com":             "--user alice@example.com",
		"unknown":                       "--user YOU",
	} {
		if got := SubjectFlag(user); got != want {
			t.Errorf("SubjectFlag(%q) = %q, want %q", user, got, want)
		}
	}
}
