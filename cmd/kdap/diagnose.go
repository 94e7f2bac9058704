package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kdap/kdap/attach"
	"github.com/kdap/kdap/diagnose"
	"github.com/kdap/kdap/runtimes"
)

// DiagnoseOptions are the options of kdap dump, heap, profile and core.
type DiagnoseOptions struct {
	clusterFlags
	Args     attach.Args
	Output   string
	All      bool          // heap: unreachable objects too
	Duration time.Duration // profile
	Format   string        // dump: text or json
	Locals   bool          // dump: each frame's locals
	Redact   bool          // mask secrets in text dumps (diagnose.DefaultRedactions)
	Patterns []string      // more patterns to mask; they imply Redact
	Out, Err io.Writer
}

// diagnoseCommands name the command that takes each diagnostic.
var diagnoseCommands = map[string]string{
	runtimes.DiagnosticThreads:   "dump",
	runtimes.DiagnosticHeap:      "heap",
	runtimes.DiagnosticRecording: "profile",
	runtimes.DiagnosticCore:      "core",
}

// newDiagnoseCommands are the commands that take diagnostics of a running
// target without stopping it for more than a moment.
func newDiagnoseCommands() []*cobra.Command {
	dump := newDiagnoseCommand(runtimes.DiagnosticThreads, diagnoseCommands[runtimes.DiagnosticThreads]+" TARGET", "Save every thread's (goroutine's) stack of a running process",
		`kdap dump saves the stack of every thread of the process in TARGET (pod/NAME, deployment/NAME
or a pod name), with --locals each frame's locals, as text or --format json. The file says how
long the target was stopped; --redact masks secrets before it is written.`)
	heap := newDiagnoseCommand(runtimes.DiagnosticHeap, diagnoseCommands[runtimes.DiagnosticHeap]+" TARGET", "Save a heap dump, snapshot or profile of a running process",
		`kdap heap saves what the process in TARGET holds in memory. The file is copied here and
nothing of it stays in the pod.`)
	profile := newDiagnoseCommand(runtimes.DiagnosticRecording, diagnoseCommands[runtimes.DiagnosticRecording]+" TARGET", "Record where a running process spends its time, with a flame graph",
		`kdap profile records the process in TARGET for --duration and saves the recording, in a format
the runtime's own tools open, and an SVG flame graph beside it (same name, .svg). Ctrl-C stops
early and saves nothing.`)
	core := newDiagnoseCommand(runtimes.DiagnosticCore, diagnoseCommands[runtimes.DiagnosticCore]+" TARGET", "Save a core dump of a running program with its executable, for dlv core",
		`kdap core has Delve write a core file of the program in TARGET, and saves it with the
program's executable in a directory (POD-core-TIME): open it offline with
  dlv core DIR/PROGRAM DIR/core
or VS Code's Go extension ("mode": "core"). The target runs on afterwards; nothing stays in the
pod but the (reused) agent.`)
	return []*cobra.Command{dump, heap, profile, core}
}

func newDiagnoseCommand(kind, use, short, long string) *cobra.Command {
	o := &DiagnoseOptions{Out: os.Stdout, Err: os.Stderr}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Long:  long + "\n\n" + perRuntime(kind),
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Args.Target = args[0]
			return o.Run(cmd.Context(), kind)
		},
	}
	o.addFlags(cmd)
	cmd.Flags().StringVarP(&o.Args.Namespace, "namespace", "n", "", "namespace (default: the context's)")
	cmd.Flags().StringVarP(&o.Args.Container, "container", "c", "", "target container (default: the pod's default container)")
	cmd.Flags().StringVar(&o.Args.Runtime, "runtime", "auto", "runtime of the target: auto or one of "+strings.Join(names(runtimes.WithDiagnostic(kind)), ", "))
	cmd.Flags().StringVar(&o.Args.Image, "image", "", "debugger image (overrides the --image-RUNTIME flags)")
	completeTargets(cmd, &o.clusterFlags, &o.Args.Namespace)
	cmd.Flags().StringVarP(&o.Output, "output", "o", "", fmt.Sprintf("file to write (default: POD-%s-TIME)", kind))
	if kind == runtimes.DiagnosticThreads || kind == runtimes.DiagnosticHeap {
		cmd.Flags().BoolVar(&o.Redact, "redact", false, "mask secrets in a text dump before it is written: values after keys like password, token or api_key, bearer credentials, JWTs, AWS key ids, private keys")
		cmd.Flags().StringArrayVar(&o.Patterns, "redact-pattern", nil, "also mask what this regular expression (Go syntax) matches; repeatable; implies --redact")
	}
	switch kind {
	case runtimes.DiagnosticThreads:
		cmd.Flags().StringVar(&o.Format, "format", "text", "text or json")
		cmd.Flags().BoolVar(&o.Locals, "locals", false, "each frame's arguments and locals, their top level only (Go, Node.js, Python)")
	case runtimes.DiagnosticHeap:
		cmd.Flags().BoolVar(&o.All, "all", false, "Java: dump every object, not only the live ones (no full GC first)")
	case runtimes.DiagnosticRecording:
		cmd.Flags().DurationVar(&o.Duration, "duration", 30*time.Second, "how long to record (at most 10m)")
	}
	return cmd
}

// perRuntime says, for each runtime that has it, what the diagnostic is
// and what it costs the target.
func perRuntime(kind string) string {
	var b strings.Builder
	for _, rt := range runtimes.WithDiagnostic(kind) {
		d, _ := rt.Diagnostic(kind)
		what := d.What
		if d.Ext != "" {
			what += " (" + d.Ext + ")"
		}
		fmt.Fprintf(&b, "  %s: %s — %s.\n", rt.Title, what, d.Cost)
	}
	return strings.TrimRight(b.String(), "\n")
}

func names(rts []*runtimes.Runtime) []string {
	var out []string
	for _, rt := range rts {
		out = append(out, rt.Name)
	}
	return out
}

// Run takes the diagnostic and says where it is.
func (o *DiagnoseOptions) Run(ctx context.Context, kind string) error {
	if _, err := attach.ParseArgs(mustJSON(o.Args)); err != nil {
		return err
	}
	params := url.Values{}
	switch kind {
	case runtimes.DiagnosticHeap:
		if o.All {
			params.Set("all", "true")
		}
	case runtimes.DiagnosticRecording:
		params.Set("duration", o.Duration.String())
	case runtimes.DiagnosticThreads:
		if o.Format != "text" && o.Format != "json" {
			return fmt.Errorf("--format %q: give text or json", o.Format)
		}
		if o.Format == "json" {
			params.Set("format", "json")
		}
		if o.Locals {
			params.Set("locals", "true")
		}
	}
	req := diagnose.Request{Args: o.Args, Kind: kind, Params: params, Output: o.Output}
	if o.Redact || len(o.Patterns) > 0 {
		var err error
		if req.Redact, err = diagnose.NewRedactor(append(append([]string{}, diagnose.DefaultRedactions...), o.Patterns...)); err != nil {
			return err
		}
	}
	res, err := diagnose.Take(ctx, o.config(), req, consoleReporter{o.Err})
	if err != nil {
		return err
	}
	t := res.Target
	stopped := ""
	if res.Pause > 0 {
		stopped = fmt.Sprintf("; the target was stopped %s", diagnose.Duration(res.Pause))
	}
	if req.Redact != nil {
		stopped += fmt.Sprintf("; %d values masked", res.Masked)
	}
	fmt.Fprintf(o.Out, "kdap: %s of pid %d (%s) saved to %s (%s in %s%s)\n", res.What, t.PID, t.Version, res.File, diagnose.Bytes(res.Size), res.Elapsed.Round(time.Millisecond), stopped)
	switch {
	case kind == runtimes.DiagnosticCore && len(res.Files) == 2:
		fmt.Fprintf(o.Out, "kdap: open it with: dlv core %s %s\n", res.Files[0], filepath.Join(res.File, "core"))
	case len(res.Files) == 2:
		fmt.Fprintf(o.Out, "kdap: flame graph: %s\n", res.Files[1])
	}
	return nil
}
