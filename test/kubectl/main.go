// Command kubectl is kubectl as Kubernetes builds it (k8s.io/kubernetes'
// cmd/kubectl), from the k8s.io/kubectl release pinned in this module: the
// e2e tests run kdap as a kubectl plugin with it, never with a kubectl the
// machine happens to have.
package main

import (
	"k8s.io/component-base/cli"
	"k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"
)

func main() {
	command := cmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		util.CheckErr(err)
	}
}
