package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/kdap/kdap/runtimes"
)

// RuntimesOptions are the options of `kdap runtimes`.
type RuntimesOptions struct {
	Output string // table or json
	Out    io.Writer
}

// runtimeInfo is one line of `kdap runtimes -o json`, which the VS Code
// extension reads instead of knowing the runtimes itself.
type runtimeInfo struct {
	Name         string           `json:"name"`
	Title        string           `json:"title"`
	Debugger     string           `json:"debugger"`
	Summary      string           `json:"summary"`
	Needs        string           `json:"needs"`
	Languages    []string         `json:"languages"`
	ImageFlag    string           `json:"imageFlag"`
	ImageEnv     string           `json:"imageEnv"`
	DefaultImage string           `json:"defaultImage"`
	Diagnostics  []diagnosticInfo `json:"diagnostics"`
}

// diagnosticInfo is a diagnostic kdap takes of a runtime's targets, and
// the kdap command that takes it.
type diagnosticInfo struct {
	Kind    string `json:"kind"`
	Command string `json:"command"` // dump, heap, profile, core
	What    string `json:"what"`
	Ext     string `json:"ext"`
	Cost    string `json:"cost"`
}

func newRuntimesCommand() *cobra.Command {
	o := &RuntimesOptions{Out: os.Stdout}
	cmd := &cobra.Command{
		Use:   "runtimes",
		Short: "List the runtimes kdap debugs, with their debugger and image",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Output != "table" && o.Output != "json" {
				return fmt.Errorf("--output %q: use table or json", o.Output)
			}
			return o.Run()
		},
	}
	cmd.Flags().StringVarP(&o.Output, "output", "o", "table", "table or json")
	return cmd
}

// Run prints the runtime registry.
func (o *RuntimesOptions) Run() error {
	infos := []runtimeInfo{}
	for _, rt := range runtimes.All {
		info := runtimeInfo{Name: rt.Name, Title: rt.Title, Debugger: rt.Debugger, Summary: rt.Summary, Needs: rt.Access.String(),
			Languages: rt.Languages, ImageFlag: "--" + rt.ImageFlag(), ImageEnv: rt.ImageEnv(), DefaultImage: rt.DefaultImage(), Diagnostics: []diagnosticInfo{}}
		for _, d := range rt.Diagnostics {
			info.Diagnostics = append(info.Diagnostics, diagnosticInfo{Kind: d.Kind, Command: diagnoseCommands[d.Kind], What: d.What, Ext: d.Ext, Cost: d.Cost})
		}
		infos = append(infos, info)
	}
	if o.Output == "json" {
		enc := json.NewEncoder(o.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(infos)
	}
	w := tabwriter.NewWriter(o.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "RUNTIME\tDEBUGGER\tNEEDS\tIMAGE FLAG\tDEFAULT IMAGE")
	for _, i := range infos {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s ($%s)\t%s\n", i.Name, i.Debugger, i.Needs, i.ImageFlag, i.ImageEnv, i.DefaultImage)
	}
	return w.Flush()
}
