// Package runtimes is kdap's knowledge of each language runtime, one file
// per runtime: how the agent recognises a target process, which debugger it
// runs, how kdap translates the IDE's attach arguments for that debugger and
// maps source paths. It imports neither Kubernetes nor DAP plumbing, so both
// kdap and the in-pod agent use it.
package runtimes

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Target is what the agent reports about the process it debugs (served as
// JSON by the agent's status endpoint).
type Target struct {
	Runtime string   `json:"runtime"`           // "go", …
	PID     int      `json:"pid"`               // in the target container's PID namespace
	Exe     string   `json:"exe"`               // /proc/PID/exe
	Version string   `json:"version,omitempty"` // language version, e.g. go1.26.8
	Module  string   `json:"module,omitempty"`  // main module path (Go)
	Sources []string `json:"sources,omitempty"` // the program's own source files, as recorded at build time
}

// KdapAttachKeys are the attach arguments kdap consumes; all others are
// passed to the debugger untouched.
var KdapAttachKeys = []string{
	"target", "namespace", "container", "context", "kubeconfig", "runtime",
	"localRoot", "image", "agentTTL", "substitutePath", "pathMappings",
	"name", "type", "request", "__configurationTarget", "__sessionId",
}

// passThrough returns the user's attach arguments without kdap's own keys.
func passThrough(user json.RawMessage) (map[string]json.RawMessage, error) {
	args := map[string]json.RawMessage{}
	if len(user) > 0 && string(user) != "null" {
		if err := json.Unmarshal(user, &args); err != nil {
			return nil, fmt.Errorf("attach arguments are not a JSON object: %w", err)
		}
	}
	for _, k := range KdapAttachKeys {
		delete(args, k)
	}
	return args, nil
}

// PathMapping says that local path From corresponds to path To in the target.
type PathMapping struct {
	From string `json:"from"` // prefix in the IDE's file system
	To   string `json:"to"`   // prefix as recorded in the target
}

// MapSources finds the prefix mapping between the IDE's files and the
// target's source paths: for each remote source it looks for the local file
// sharing the longest path suffix (at least the file name and its
// directory), and derives the two prefixes from the best match. ok is false
// when nothing matches.
func MapSources(localRoot string, localFiles, remote []string) (PathMapping, bool) {
	byBase := map[string][]string{}
	for _, f := range localFiles {
		byBase[filepath.Base(f)] = append(byBase[filepath.Base(f)], f)
	}
	best, bestLen := PathMapping{}, 1 // a match needs the file name and its directory
	for _, r := range remote {
		rparts := splitPath(r)
		for _, l := range byBase[filepath.Base(r)] {
			lparts := splitPath(l)
			n := commonSuffix(lparts, rparts)
			if n > bestLen {
				best = PathMapping{
					From: filepath.Join(localRoot, filepath.Join(lparts[:len(lparts)-n]...)),
					To:   strings.TrimSuffix(joinLike(r, rparts[:len(rparts)-n]), "/"),
				}
				bestLen = n
			}
		}
	}
	return best, best.From != ""
}

// splitPath splits a slash path into its non-empty components.
func splitPath(p string) []string {
	var out []string
	for _, c := range strings.Split(filepath.ToSlash(p), "/") {
		if c != "" {
			out = append(out, c)
		}
	}
	return out
}

// joinLike joins parts, keeping a leading slash if orig had one.
func joinLike(orig string, parts []string) string {
	j := strings.Join(parts, "/")
	if strings.HasPrefix(orig, "/") {
		return "/" + j
	}
	return j
}

func commonSuffix(a, b []string) int {
	n := 0
	for n < len(a) && n < len(b) && a[len(a)-1-n] == b[len(b)-1-n] {
		n++
	}
	return n
}

// LocalSources lists files under root with one of the given extensions,
// relative to root, skipping VCS, dependency and hidden directories and
// stopping after limit files.
func LocalSources(root string, exts []string, limit int) ([]string, error) {
	var out []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() {
			name := d.Name()
			if p != root && (strings.HasPrefix(name, ".") || name == "node_modules" || name == "vendor" || name == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		for _, e := range exts {
			if strings.HasSuffix(p, e) {
				rel, _ := filepath.Rel(root, p)
				out = append(out, rel)
				break
			}
		}
		if len(out) >= limit {
			return filepath.SkipAll
		}
		return nil
	})
	sort.Strings(out)
	return out, err
}
