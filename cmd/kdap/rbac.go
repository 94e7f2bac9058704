package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kdap/kdap/rbac"
)

// RBACOptions are the options of `kdap rbac`.
type RBACOptions struct {
	Namespace, Name             string
	Features                    []string
	User, Group, ServiceAccount string
	PullSecrets                 []string
	Out                         io.Writer
}

func newRBACCommand() *cobra.Command {
	o := &RBACOptions{Out: os.Stdout}
	var features []string
	for _, f := range rbac.Features {
		def := ""
		if f.Default {
			def = " (default)"
		}
		features = append(features, fmt.Sprintf("  %-15s %s%s", f.Name, f.Summary, def))
	}
	cmd := &cobra.Command{
		Use:   "rbac",
		Short: "Print a Role (and a ClusterRole for what needs one) with exactly the permissions kdap uses",
		Long: `kdap rbac prints YAML for kubectl apply -f: a Role in --namespace with the permissions of the
chosen features, each rule commented with what kdap does with it; a ClusterRole for features
that need one; and their bindings when --user, --group or --serviceaccount names who gets them.
kdap doctor checks the same list. The features:

` + strings.Join(features, "\n"),
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error { return o.Run() },
	}
	cmd.Flags().StringVarP(&o.Namespace, "namespace", "n", "default", "namespace of the Role: where the pods to debug are")
	cmd.Flags().StringVar(&o.Name, "name", "kdap", "name of the Role, the ClusterRole and the bindings")
	cmd.Flags().StringSliceVar(&o.Features, "feature", nil, "features to grant, comma-separated: names above, default, or all (default: the default ones)")
	cmd.Flags().StringVar(&o.User, "user", "", "bind the roles to this user")
	cmd.Flags().StringVar(&o.Group, "group", "", "bind the roles to this group")
	cmd.Flags().StringVar(&o.ServiceAccount, "serviceaccount", "", "bind the roles to this service account, NAMESPACE:NAME")
	cmd.Flags().StringSliceVar(&o.PullSecrets, "pull-secret", nil, "with --feature pull-secrets: only these secrets (the pods' imagePullSecrets)")
	return cmd
}

// Run prints the grant.
func (o *RBACOptions) Run() error {
	features, err := rbac.Select(o.Features)
	if err != nil {
		return fmt.Errorf("--feature: %w", err)
	}
	subject, err := rbac.ParseSubject(o.User, o.Group, o.ServiceAccount)
	if err != nil {
		return err
	}
	return rbac.NewGrant(rbac.GrantOptions{Name: o.Name, Namespace: o.Namespace, Features: features, Subject: subject, PullSecrets: o.PullSecrets}).WriteYAML(o.Out)
}
