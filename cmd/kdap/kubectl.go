package main

import (
	"strings"

	"github.com/spf13/cobra"

	"github.com/kdap/kdap/attach"
)

// completing reports whether kdap runs as kubectl_complete-kdap, the
// program kubectl asks to complete a plugin's command line.
func completing(argv0 string) bool {
	return strings.HasPrefix(baseName(argv0), "kubectl_complete-")
}

// baseName is argv0's file name without .exe, whichever the separator.
func baseName(argv0 string) string {
	return strings.TrimSuffix(argv0[strings.LastIndexAny(argv0, `/\`)+1:], ".exe")
}

// pluginDisplayName is how kdap names itself in help when kubectl runs it
// as a plugin (kubectl-kdap, or kubectl_complete-kdap for completion).
func pluginDisplayName(argv0 string) string {
	base := baseName(argv0)
	if strings.HasPrefix(base, "kubectl-") || strings.HasPrefix(base, "kubectl_complete-") {
		return "kubectl kdap"
	}
	return ""
}

// completeTargets completes a command's TARGET argument with the Running
// pods and the deployments of the namespace its -n names, and -n with the
// cluster's namespaces.
func completeTargets(cmd *cobra.Command, f *clusterFlags, namespace *string) {
	cmd.ValidArgsFunction = func(c *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		names, err := attach.TargetNames(c.Context(), f.config(), *namespace)
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	}
	cmd.RegisterFlagCompletionFunc("namespace", func(c *cobra.Command, _ []string, _ string) ([]string, cobra.ShellCompDirective) {
		names, err := attach.NamespaceNames(c.Context(), f.config())
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	})
}
