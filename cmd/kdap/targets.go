package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/kdap/kdap/attach"
)

// listFlags are the flags of kdap's list commands (targets, sessions).
type listFlags struct {
	clusterFlags
	Namespace     string
	AllNamespaces bool
	Output        string // table or json
}

func (f *listFlags) addListFlags(cmd *cobra.Command) {
	f.addFlags(cmd)
	cmd.Flags().StringVarP(&f.Namespace, "namespace", "n", "", "namespace (default: the context's)")
	cmd.Flags().BoolVarP(&f.AllNamespaces, "all-namespaces", "A", false, "list every namespace")
	cmd.Flags().StringVarP(&f.Output, "output", "o", "table", "table or json")
}

// Validate checks the options.
func (f *listFlags) Validate() error {
	if f.Output != "table" && f.Output != "json" {
		return fmt.Errorf("--output %q: use table or json", f.Output)
	}
	if f.AllNamespaces && f.Namespace != "" {
		return fmt.Errorf("--namespace and --all-namespaces exclude each other")
	}
	return nil
}

// namespace is the namespace to list: "" for all of them.
func (f *listFlags) namespace() (string, error) {
	if f.AllNamespaces || f.Namespace != "" {
		return f.Namespace, nil
	}
	return attach.DefaultNamespace(f.config())
}

// TargetsOptions are the options of `kdap targets`.
type TargetsOptions struct {
	listFlags
	Out io.Writer
}

func newTargetsCommand() *cobra.Command {
	o := &TargetsOptions{Out: os.Stdout}
	cmd := &cobra.Command{
		Use:   "targets",
		Short: "List the containers of Running pods kdap can attach to, with their guessed runtime",
		Long: `kdap targets lists the containers of Running pods in a namespace (or all of them), with the
runtime "runtime": "auto" would pick for each. -o json is what the VS Code extension's pod
picker reads.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	o.addListFlags(cmd)
	return cmd
}

// Run lists the targets.
func (o *TargetsOptions) Run(ctx context.Context) error {
	ns, err := o.namespace()
	if err != nil {
		return err
	}
	targets, err := attach.ListTargets(ctx, o.config(), ns)
	if err != nil {
		return err
	}
	if o.Output == "json" {
		enc := json.NewEncoder(o.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(targets)
	}
	w := tabwriter.NewWriter(o.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAMESPACE\tPOD\tCONTAINER\tRUNTIME\tIMAGE")
	for _, t := range targets {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", t.Namespace, t.Pod, t.Container, t.Runtime, t.Image)
	}
	return w.Flush()
}
