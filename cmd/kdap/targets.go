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

// TargetsOptions are the options of `kdap targets`.
type TargetsOptions struct {
	clusterFlags
	Namespace     string
	AllNamespaces bool
	Output        string // table or json
	Out           io.Writer
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
	o.addFlags(cmd)
	cmd.Flags().StringVarP(&o.Namespace, "namespace", "n", "", "namespace (default: the context's)")
	cmd.Flags().BoolVarP(&o.AllNamespaces, "all-namespaces", "A", false, "list every namespace")
	cmd.Flags().StringVarP(&o.Output, "output", "o", "table", "table or json")
	return cmd
}

// Validate checks the options.
func (o *TargetsOptions) Validate() error {
	if o.Output != "table" && o.Output != "json" {
		return fmt.Errorf("--output %q: use table or json", o.Output)
	}
	if o.AllNamespaces && o.Namespace != "" {
		return fmt.Errorf("--namespace and --all-namespaces exclude each other")
	}
	return nil
}

// Run lists the targets.
func (o *TargetsOptions) Run(ctx context.Context) error {
	ns := o.Namespace
	if !o.AllNamespaces && ns == "" {
		var err error
		if ns, err = attach.DefaultNamespace(o.config()); err != nil {
			return err
		}
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
