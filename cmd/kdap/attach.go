package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kdap/kdap/attach"
	"github.com/kdap/kdap/runtimes"
)

// AttachOptions are the options of `kdap attach`.
type AttachOptions struct {
	clusterFlags
	Args     attach.Args
	Out, Err io.Writer
}

func newAttachCommand() *cobra.Command {
	o := &AttachOptions{Out: os.Stdout, Err: os.Stderr}
	cmd := &cobra.Command{
		Use:   "attach TARGET",
		Short: "Inject the debugger and forward it to a local port, for clients that connect themselves (GoLand, dlv connect, any DAP client)",
		Long: `kdap attach injects (or reuses) the debugger for TARGET (pod/NAME, deployment/NAME or a
pod name) and forwards its port to 127.0.0.1. It prints the endpoint and stays until Ctrl-C;
the target keeps running afterwards. GoLand: Run → Edit Configurations → Go Remote, host
127.0.0.1 and the printed port. DAP clients: kdap prints how to attach for the target's runtime.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Args.Target = args[0]
			return o.Run(cmd.Context())
		},
	}
	o.addFlags(cmd)
	cmd.Flags().StringVarP(&o.Args.Namespace, "namespace", "n", "", "namespace (default: the context's)")
	cmd.Flags().StringVarP(&o.Args.Container, "container", "c", "", "target container (default: the pod's default container)")
	cmd.Flags().StringVar(&o.Args.Runtime, "runtime", "auto", "runtime of the target: auto (guessed from the container's image and command) or one of "+strings.Join(runtimes.Names(), ", "))
	cmd.Flags().StringVar(&o.Args.Image, "image", "", "debugger image (overrides the --image-RUNTIME flags)")
	return cmd
}

// Run prepares the endpoint and holds the forward until ctx is done.
func (o *AttachOptions) Run(ctx context.Context) error {
	if _, err := attach.ParseArgs(mustJSON(o.Args)); err != nil {
		return err
	}
	ep, err := attach.Prepare(ctx, o.config(), o.Args, consoleReporter{o.Err})
	if err != nil {
		return err
	}
	defer ep.Forward.Close()
	t := ep.Status.Target
	title, how := t.Runtime, "connect a client of its debugger"
	if rt := runtimes.Lookup(t.Runtime); rt != nil {
		title, how = rt.Title, rt.ConnectHint(t)
	}
	fmt.Fprintf(o.Err, "kdap: debugging pid %d (%s %s, %s) in pod %s/%s, container %s\n", t.PID, title, t.Version, t.Exe, ep.Namespace, ep.Pod, ep.Container)
	for _, w := range t.Warnings {
		fmt.Fprintln(o.Err, "kdap: warning:", w)
	}
	fmt.Fprintf(o.Out, "kdap: debugger listening at: %s (%s)\n", ep.Forward.Addr(), how)
	select {
	case <-ctx.Done():
		fmt.Fprintln(o.Err, "kdap: stopping; the target keeps running")
		return nil
	case <-ep.Forward.Done():
		return fmt.Errorf("lost the port-forward to pod %s/%s: %v; run kdap attach again", ep.Namespace, ep.Pod, ep.Forward.Err())
	}
}

type consoleReporter struct{ w io.Writer }

func (c consoleReporter) Progress(step string) { fmt.Fprintf(c.w, "kdap: %s…\n", step) }
func (c consoleReporter) Output(text string)   { fmt.Fprintln(c.w, text) }
