package layering

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/kdap/kdap/runtimes"
)

// ownFiles are the files (or directories, ending in /) where a runtime may
// be named: its declaration, its agent driver, its debugger image. Adding a
// runtime adds its line here and touches no other file of the product.
var ownFiles = map[string][]string{
	"go":     {"runtimes/golang.go", "agent/delve.go", "images/go/"},
	"python": {"runtimes/python.go", "agent/debugpy.go", "images/python/"},
	"node":   {"runtimes/node.go", "agent/jsdebug.go", "agent/jssession.go", "agent/inspector.go", "images/node/"},
	"java":   {"runtimes/java.go", "agent/javadebug.go", "agent/jvm.go", "agent/hotspot.go", "agent/jdwp.go", "jdwp/", "images/java/"},
}

// TestRuntimeNamesStayInTheirFiles: the product's code (not its tests)
// names a runtime — "python", "Python" as a string — only in that
// runtime's own files; everything else goes through runtimes.All. The VS
// Code extension's sources name none (its package.json is generated, see
// internal/vscodegen).
func TestRuntimeNamesStayInTheirFiles(t *testing.T) {
	root := filepath.Join("..", "..")
	names := map[string]string{} // literal → runtime
	for _, rt := range runtimes.All {
		if _, ok := ownFiles[rt.Name]; !ok {
			t.Errorf("runtime %q has no entry in ownFiles", rt.Name)
		}
		names[rt.Name], names[rt.Title] = rt.Name, rt.Name
	}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel := filepath.ToSlash(strings.TrimPrefix(p, root+string(filepath.Separator)))
		if d.IsDir() {
			if rel == "test" || rel == ".git" || d.Name() == "node_modules" || d.Name() == "testdata" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(rel, ".go") || strings.HasSuffix(rel, "_test.go") {
			return nil
		}
		for _, lit := range runtimeLiterals(t, p, names) {
			if !owns(names[lit.value], rel) {
				t.Errorf("%s:%d names runtime %q: declare it in runtimes (%s) and use the registry", rel, lit.line, lit.value, strings.Join(ownFiles[names[lit.value]], ", "))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(root, "vscode-extension", "src")
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		for lit := range names {
			if regexp.MustCompile("['\"`]" + regexp.QuoteMeta(lit) + "['\"`]").Match(b) {
				t.Errorf("vscode-extension/src/%s names runtime %q: take the runtimes from `kdap runtimes -o json`", e.Name(), lit)
			}
		}
	}
}

func owns(runtime, rel string) bool {
	for _, own := range ownFiles[runtime] {
		if rel == own || strings.HasSuffix(own, "/") && strings.HasPrefix(rel, own) {
			return true
		}
	}
	return false
}

type literal struct {
	value string
	line  int
}

// runtimeLiterals lists the string literals in a Go file that equal a
// runtime's name or title, except a program's name given to exec.Command
// (the go tool is not the Go runtime).
func runtimeLiterals(t *testing.T, file string, names map[string]string) []literal {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, file, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	program := map[*ast.BasicLit]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		if sel, ok := call.Fun.(*ast.SelectorExpr); ok && strings.HasPrefix(sel.Sel.Name, "Command") {
			for _, a := range call.Args[:min(2, len(call.Args))] {
				if lit, ok := a.(*ast.BasicLit); ok {
					program[lit] = true
				}
			}
		}
		return true
	})
	var out []literal
	ast.Inspect(f, func(n ast.Node) bool {
		lit, ok := n.(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING || program[lit] {
			return true
		}
		v, err := strconv.Unquote(lit.Value)
		if err == nil && names[v] != "" {
			out = append(out, literal{v, fset.Position(lit.Pos()).Line})
		}
		return true
	})
	return out
}
