package rbac

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"
)

// WriteYAML writes the grant as YAML documents for kubectl apply -f, each
// rule under a comment that says what kdap does with it.
func (g Grant) WriteYAML(w io.Writer) error {
	var names []string
	for _, f := range g.features {
		names = append(names, f.Name)
	}
	y := &yamlWriter{}
	y.line("# kdap's Kubernetes permissions, features: %s (kdap rbac --help lists them).", strings.Join(names, ", "))
	y.line("# Selfsubjectreviews and selfsubjectaccessreviews, which kdap also uses, are every user's by default.")
	y.object("Role", g.Role.Name, g.Role.Namespace)
	y.rules(g.Role.Rules, g.roleWhy)
	if b := g.RoleBinding; b != nil {
		y.line("---")
		y.object("RoleBinding", b.Name, b.Namespace)
		y.binding(b.RoleRef, b.Subjects)
	}
	if r := g.ClusterRole; r != nil {
		y.line("---")
		y.line("# What only a ClusterRole grants: cluster-scoped resources, and lists across namespaces.")
		y.object("ClusterRole", r.Name, "")
		y.rules(r.Rules, g.clusterRoleWhy)
	}
	if b := g.ClusterRoleBinding; b != nil {
		y.line("---")
		y.object("ClusterRoleBinding", b.Name, "")
		y.binding(b.RoleRef, b.Subjects)
	}
	_, err := io.WriteString(w, y.String())
	return err
}

type yamlWriter struct{ strings.Builder }

func (y *yamlWriter) line(format string, a ...any) {
	fmt.Fprintf(y, format+"\n", a...)
}

func (y *yamlWriter) object(kind, name, namespace string) {
	y.line("apiVersion: %s/v1", rbacv1.GroupName)
	y.line("kind: %s", kind)
	y.line("metadata:")
	y.line("  name: %s", quote(name))
	if namespace != "" {
		y.line("  namespace: %s", quote(namespace))
	}
}

func (y *yamlWriter) rules(rules []rbacv1.PolicyRule, whys [][]string) {
	y.line("rules:")
	for i, r := range rules {
		for _, why := range whys[i] {
			y.line("# %s", why)
		}
		y.line("- apiGroups: %s", list(r.APIGroups))
		y.line("  resources: %s", list(r.Resources))
		if len(r.ResourceNames) > 0 {
			y.line("  resourceNames: %s", list(r.ResourceNames))
		}
		y.line("  verbs: %s", list(r.Verbs))
	}
}

func (y *yamlWriter) binding(ref rbacv1.RoleRef, subjects []rbacv1.Subject) {
	y.line("roleRef:")
	y.line("  apiGroup: %s", ref.APIGroup)
	y.line("  kind: %s", ref.Kind)
	y.line("  name: %s", quote(ref.Name))
	y.line("subjects:")
	for _, s := range subjects {
		y.line("- kind: %s", s.Kind)
		y.line("  name: %s", quote(s.Name))
		if s.APIGroup != "" {
			y.line("  apiGroup: %s", s.APIGroup)
		}
		if s.Namespace != "" {
			y.line("  namespace: %s", quote(s.Namespace))
		}
	}
}

// quote is s as a YAML double-quoted scalar (JSON's escapes are YAML's).
func quote(s string) string { return strconv.Quote(s) }

func list(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}
