package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kdap/kdap/attach"
	"github.com/kdap/kdap/diagnose"
	"github.com/kdap/kdap/runtimes"
)

// DiagnoseOptions are the options of kdap dump, heap and profile.
type DiagnoseOptions struct {
	clusterFlags
	Args     attach.Args
	Output   string
	All      bool          // heap: unreachable objects too
	Duration time.Duration // profile
	Out, Err io.Writer
}

// newDiagnoseCommands are the commands that take diagnostics of a running
// target without stopping it for more than a moment (Java for now).
func newDiagnoseCommands() []*cobra.Command {
	dump := newDiagnoseCommand(diagnose.Threads, "dump TARGET", "Save a thread dump of a running JVM (every thread's stack, held locks)",
		`kdap dump takes a thread dump of the JVM in TARGET (pod/NAME, deployment/NAME or a pod name),
as jstack would, and saves it. It works whether or not the JVM was started with JDWP.`)
	heap := newDiagnoseCommand(diagnose.Heap, "heap TARGET", "Save a heap dump (.hprof) of a running JVM",
		`kdap heap has the JVM in TARGET write a heap dump of its live objects (GC.heap_dump; --all for
every object) into its /tmp, copies it here and deletes it in the pod. The JVM pauses while it
writes the dump: about a second per 300 MB of live heap. Open it with Eclipse MAT, VisualVM or
IntelliJ IDEA. It works whether or not the JVM was started with JDWP.`)
	profile := newDiagnoseCommand(diagnose.Recording, "profile TARGET", "Record a running JVM with Java Flight Recorder and save the .jfr file",
		`kdap profile starts a JFR recording (settings=profile) in the JVM in TARGET, waits --duration,
copies the recording here and deletes it in the pod; Ctrl-C stops it early and saves nothing.
Open it with JDK Mission Control, IntelliJ IDEA, or jfr print. It works whether or not the JVM
was started with JDWP.`)
	return []*cobra.Command{dump, heap, profile}
}

func newDiagnoseCommand(kind diagnose.Kind, use, short, long string) *cobra.Command {
	o := &DiagnoseOptions{Out: os.Stdout, Err: os.Stderr}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Long:  long,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Args.Target = args[0]
			return o.Run(cmd.Context(), kind)
		},
	}
	o.addFlags(cmd)
	cmd.Flags().StringVarP(&o.Args.Namespace, "namespace", "n", "", "namespace (default: the context's)")
	cmd.Flags().StringVarP(&o.Args.Container, "container", "c", "", "target container (default: the pod's default container)")
	cmd.Flags().StringVar(&o.Args.Runtime, "runtime", "auto", "runtime of the target: auto or one of "+strings.Join(runtimes.Names(), ", "))
	cmd.Flags().StringVar(&o.Args.Image, "image", "", "debugger image (overrides the --image-RUNTIME flags)")
	cmd.Flags().StringVarP(&o.Output, "output", "o", "", fmt.Sprintf("file to write (default: POD-%s-TIME%s)", kind.Name, kind.Ext))
	switch kind {
	case diagnose.Heap:
		cmd.Flags().BoolVar(&o.All, "all", false, "dump every object, not only the live ones (no full GC first)")
	case diagnose.Recording:
		cmd.Flags().DurationVar(&o.Duration, "duration", 30*time.Second, "how long to record (at most 10m)")
	}
	return cmd
}

// Run takes the diagnostic and says where it is.
func (o *DiagnoseOptions) Run(ctx context.Context, kind diagnose.Kind) error {
	if _, err := attach.ParseArgs(mustJSON(o.Args)); err != nil {
		return err
	}
	params := url.Values{}
	if o.All {
		params.Set("all", "true")
	}
	if kind == diagnose.Recording {
		params.Set("duration", o.Duration.String())
		kind.Waiting = fmt.Sprintf("recording for %s; %s", o.Duration, kind.Waiting)
	}
	res, err := diagnose.Take(ctx, o.config(), diagnose.Request{Args: o.Args, Kind: kind, Params: params, Output: o.Output}, consoleReporter{o.Err})
	if err != nil {
		return err
	}
	t := res.Target
	fmt.Fprintf(o.Out, "kdap: %s of pid %d (%s) saved to %s (%s, %s)\n", kind.What, t.PID, t.Version, res.File, diagnose.Bytes(res.Size), res.Elapsed.Round(time.Millisecond))
	return nil
}
