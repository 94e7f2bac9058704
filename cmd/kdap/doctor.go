package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/kdap/kdap/attach"
	"github.com/kdap/kdap/doctor"
)

// DoctorOptions are the options of `kdap doctor`.
type DoctorOptions struct {
	clusterFlags
	Args     attach.Args
	Output   string // table or json
	Out, Err io.Writer
}

func newDoctorCommand() *cobra.Command {
	o := &DoctorOptions{Out: os.Stdout, Err: os.Stderr}
	cmd := &cobra.Command{
		Use:   "doctor TARGET",
		Short: "Check, before anything is added to the pod, whether kdap can debug TARGET, with each fix",
		Long: `kdap doctor checks what debugging TARGET needs and changes nothing in the cluster: every
API permission kdap uses (SelfSubjectAccessReviews; kdap rbac prints a Role with them), the
namespace's PodSecurity level against the debugger container this target needs, whether the
debugger image can be pulled where kdap can tell, the runtime guess, and what only the first
attach can tell (the node's ptrace_scope, a stripped binary, a JVM flag) with how it will say so.
It exits non-zero when something blocks debugging, for CI.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.Output != "table" && o.Output != "json" {
				return fmt.Errorf("--output %q: use table or json", o.Output)
			}
			o.Args.Target = args[0]
			return o.Run(cmd.Context())
		},
	}
	o.addFlags(cmd)
	cmd.Flags().StringVarP(&o.Args.Namespace, "namespace", "n", "", "namespace (default: the context's)")
	cmd.Flags().StringVarP(&o.Args.Container, "container", "c", "", "target container (default: the pod's default container)")
	cmd.Flags().StringVar(&o.Args.Runtime, "runtime", "auto", "runtime of the target: auto, or one of kdap runtimes")
	cmd.Flags().StringVar(&o.Args.Image, "image", "", "debugger image (overrides the --image-RUNTIME flags)")
	cmd.Flags().StringVarP(&o.Output, "output", "o", "table", "table or json")
	completeTargets(cmd, &o.clusterFlags, &o.Args.Namespace)
	return cmd
}

// Run checks the target and prints the report; it fails when a check
// blocks.
func (o *DoctorOptions) Run(ctx context.Context) error {
	cfg := o.config()
	cl, err := attach.Connect(cfg, o.Args)
	if err != nil {
		return err
	}
	rep := doctor.Run(ctx, cl, cfg, o.Args, func(s string) { fmt.Fprintf(o.Err, "kdap: %s…\n", s) })
	if o.Output == "json" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		fmt.Fprintf(o.Out, "%s\n", b)
	} else {
		writeReport(o.Out, rep)
	}
	if n := rep.Blocking(); n > 0 {
		return fmt.Errorf("%d %s debugging %s: fix what each says", n, plural(n, "check blocks", "checks block"), rep.Target)
	}
	return nil
}

// writeReport prints the report as a table, each fix under its row.
func writeReport(w io.Writer, rep doctor.Report) {
	fmt.Fprintf(w, "kdap doctor: %s in namespace %s, as %s\n\n", rep.Target, rep.Namespace, rep.Who)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tRESULT\tDETAIL")
	for _, c := range rep.Checks {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Name, c.Result, c.Detail)
		if c.Fix != "" && c.Result != doctor.OK {
			fmt.Fprintf(tw, "\t\t→ %s\n", c.Fix)
		}
	}
	tw.Flush()
	if len(rep.Notes) > 0 {
		fmt.Fprintf(w, "\nkdap would also say at attach:\n  %s\n", strings.Join(rep.Notes, "\n  "))
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
