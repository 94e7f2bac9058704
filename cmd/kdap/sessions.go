package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/kdap/kdap/attach"
)

// SessionsOptions are the options of `kdap sessions`.
type SessionsOptions struct {
	listFlags
	Out io.Writer
	now func() time.Time
}

func newSessionsCommand() *cobra.Command {
	o := &SessionsOptions{Out: os.Stdout, now: time.Now}
	cmd := &cobra.Command{
		Use:   "sessions",
		Short: "List the pods with a live kdap agent, since when and who added it",
		Long: `kdap sessions lists the kdap debugger containers that are Running in a namespace (or all of
them): the pod and container they debug, the runtime, since when, and who added them — as the
container's spec records it, which Kubernetes does not let anyone change. Each session's start
and end are also Events on the pod (reason KdapDebugSession).`,
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

// Run lists the sessions.
func (o *SessionsOptions) Run(ctx context.Context) error {
	ns, err := o.namespace()
	if err != nil {
		return err
	}
	sessions, err := attach.ListSessions(ctx, o.config(), ns)
	if err != nil {
		return err
	}
	if o.Output == "json" {
		enc := json.NewEncoder(o.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(sessions)
	}
	if len(sessions) == 0 {
		_, err := fmt.Fprintln(o.Out, "no live kdap agents")
		return err
	}
	w := tabwriter.NewWriter(o.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAMESPACE\tPOD\tCONTAINER\tAGENT\tRUNTIME\tSINCE\tINJECTED BY")
	for _, s := range sessions {
		by := s.InjectedBy
		if by == "" {
			by = "(not recorded)"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s (%s ago)\t%s\n", s.Namespace, s.Pod, s.Container, s.Agent, s.Runtime,
			s.Since.UTC().Format(time.RFC3339), o.now().Sub(s.Since).Round(time.Second), by)
	}
	return w.Flush()
}
