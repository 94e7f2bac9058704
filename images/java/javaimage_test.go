package javaimage

import (
	"os"
	"strings"
	"testing"
)

// TestDockerfileKeepsInStep: the Dockerfile users build takes the jars,
// modules and carrier version the engine-less image is written from.
func TestDockerfileKeepsInStep(t *testing.T) {
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	want := append([]string{
		DebugCarrier.Name + "-" + DebugCarrier.Version + ".tgz",
		pluginJar[len("package/"):],
		"--add-modules " + strings.Join(Modules, ","),
		JREDir, LibDir,
	}, carriedJars...)
	for jar := range debianJars {
		want = append(want, jar)
	}
	for _, w := range want {
		if !strings.Contains(df, w) {
			t.Errorf("images/java/Dockerfile does not say %q", w)
		}
	}
}
