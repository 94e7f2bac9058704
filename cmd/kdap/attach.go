package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kdap/kdap/attach"
	"github.com/kdap/kdap/localend"
	"github.com/kdap/kdap/runtimes"
)

// AttachOptions are the options of `kdap attach`.
type AttachOptions struct {
	clusterFlags
	Args     attach.Args
	Port     int    // local port of the endpoint; 0 picks one
	Listen   string // the endpoint's address instead: unix:PATH or HOST:PORT
	Out, Err io.Writer
}

func newAttachCommand() *cobra.Command {
	o := &AttachOptions{Out: os.Stdout, Err: os.Stderr}
	cmd := &cobra.Command{
		Use:   "attach TARGET",
		Short: "Inject the debugger and forward it to a local port, for clients that connect themselves (GoLand, dlv connect, any DAP client)",
		Long: `kdap attach injects (or reuses) the debugger for TARGET (pod/NAME, deployment/NAME or a
pod name) and forwards its port to 127.0.0.1. It prints the endpoint and stays until Ctrl-C;
the target keeps running afterwards. If the port-forward drops, the session it carried ends
and the endpoint stays: the next connection is forwarded anew to the same debugger.
GoLand: Run → Edit Configurations → Go Remote, host 127.0.0.1 and the printed port. IntelliJ IDEA (Java): Run → Edit Configurations → Remote JVM
Debug, "Attach to remote JVM", socket, host 127.0.0.1 and the port (set a fixed one with
--port). DAP clients: kdap prints how to attach for the target's runtime.`,
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
	completeTargets(cmd, &o.clusterFlags, &o.Args.Namespace)
	cmd.Flags().IntVar(&o.Port, "port", 0, "local port of the endpoint on 127.0.0.1, e.g. 5005 for an IDE configuration that keeps its port (default: any free port; on Linux only your user's connections are taken)")
	cmd.Flags().StringVar(&o.Listen, "listen", "", "the endpoint's address instead of --port: unix:PATH (a Unix socket only your user may use, e.g. for dlv connect unix:PATH) or 127.0.0.1:PORT")
	return cmd
}

// Run prepares the endpoint and holds the forward until ctx is done.
func (o *AttachOptions) Run(ctx context.Context) error {
	if _, err := attach.ParseArgs(mustJSON(o.Args)); err != nil {
		return err
	}
	addr, flag := fmt.Sprintf("127.0.0.1:%d", o.Port), "--port"
	if o.Listen != "" {
		if o.Port != 0 {
			return errors.New("give --port or --listen, not both")
		}
		if err := localend.Check("--listen", o.Listen); err != nil {
			return err
		}
		addr, flag = o.Listen, "--listen"
	}
	ln, err := localend.Listen(addr, func(reason string) { fmt.Fprintln(o.Err, "kdap:", reason) })
	if err != nil {
		return fmt.Errorf("%s %s: %w (choose another, or --port 0 for any free port)", flag, addr, err)
	}
	defer ln.Close()
	cfg := o.config()
	cfg.Raw = true // the client's own protocol is relayed as it is
	ep, err := attach.Prepare(ctx, cfg, o.Args, consoleReporter{o.Err})
	if err != nil {
		return err
	}
	defer func() { ep.Forward.Close() }() // the last one: a lost forward is replaced
	if ep.Status.Unavailable != "" {
		return errors.New(ep.Status.Unavailable)
	}
	t := ep.Status.Target
	what, how := fmt.Sprintf("%s %s, %s", t.Runtime, t.Version, t.Exe), "connect a client of its debugger"
	if rt := runtimes.Lookup(t.Runtime); rt != nil {
		what, how = attach.Describe(rt, t), rt.ConnectHint(t)
	}
	fmt.Fprintf(o.Err, "kdap: debugging pid %d (%s) in pod %s/%s, container %s\n", t.PID, what, ep.Namespace, ep.Pod, ep.Container)
	for _, w := range t.Warnings {
		fmt.Fprintln(o.Err, "kdap: warning:", w)
	}
	fmt.Fprintf(o.Out, "kdap: debugger listening at: %s (%s)\n", listenAddr(ln), how)
	if err := attach.ServeEndpoint(ctx, ep, ln, func(s string) { fmt.Fprintln(o.Err, s) }); err != nil {
		return err
	}
	fmt.Fprintln(o.Err, "kdap: stopping; "+ep.TargetNote(ctx))
	return nil
}

type consoleReporter struct{ w io.Writer }

func (c consoleReporter) Progress(step string) { fmt.Fprintf(c.w, "kdap: %s…\n", step) }
func (c consoleReporter) Output(text string)   { fmt.Fprintln(c.w, text) }
