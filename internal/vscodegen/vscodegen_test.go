package vscodegen

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite vscode-extension/package.json")

var packageJSON = filepath.Join("..", "..", "vscode-extension", "package.json")

// TestPackageJSONIsCurrent fails when package.json's runtime fields differ
// from the registry: run `make generate`.
func TestPackageJSONIsCurrent(t *testing.T) {
	old, err := os.ReadFile(packageJSON)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Update(old)
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(packageJSON, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if !bytes.Equal(old, got) {
		t.Errorf("vscode-extension/package.json is stale: run `make generate` (-old +new):\n%s", cmp.Diff(string(old), string(got)))
	}
}

// TestFormatKeepsADocumentAsItIs: an unchanged document comes back byte for
// byte (key order, escapes, empty containers, numbers).
func TestFormatKeepsADocumentAsItIs(t *testing.T) {
	doc := `{
  "b": 1,
  "a": [
    "x & <y>",
    "é — \"q\"",
    true,
    null,
    2.5
  ],
  "e": {},
  "f": []
}
`
	v, err := parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	out, err := format(v)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(doc, string(out)); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}
