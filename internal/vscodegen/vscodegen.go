// Package vscodegen writes what the VS Code extension's package.json says
// about runtimes from kdap's runtime registry (package runtimes): the
// languages whose breakpoints the extension enables, the "runtime" enum of
// the launch configuration, each runtime's path-mapping arguments (the
// attach properties are kdap's own, attach.Args, plus these), and the
// image flags. Its test fails when package.json is stale; `make generate`
// rewrites it.
package vscodegen

import (
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/kdap/kdap/attach"
	"github.com/kdap/kdap/runtimes"
)

// autoDescription explains "runtime": "auto" in the schema.
const autoDescription = "Guess from the container's image name and command; the debugger checks the process and says which runtime to set if the guess was wrong."

// Update returns package.json with its runtime-derived fields written from
// runtimes.All; everything else is kept as it was, in its order.
func Update(packageJSON []byte) ([]byte, error) {
	v, err := parse(packageJSON)
	if err != nil {
		return nil, fmt.Errorf("package.json: %w", err)
	}
	pkg, ok := v.(*object)
	if !ok {
		return nil, fmt.Errorf("package.json is not an object")
	}
	contributes := pkg.path("contributes")
	if contributes == nil {
		return nil, fmt.Errorf("package.json has no contributes")
	}
	debuggers, _ := contributes.get("debuggers").([]any)
	if len(debuggers) != 1 {
		return nil, fmt.Errorf("package.json: want one contributed debugger, have %d", len(debuggers))
	}
	dbg := debuggers[0].(*object)
	props := dbg.path("configurationAttributes", "attach", "properties")
	if props == nil {
		return nil, fmt.Errorf("package.json: the debugger has no attach properties")
	}

	var names, summaries, languages, debuggerNames, flags, envs []any
	seenLang := map[string]bool{}
	for _, rt := range runtimes.All {
		names = append(names, rt.Name)
		summaries = append(summaries, rt.Summary)
		debuggerNames = append(debuggerNames, fmt.Sprintf("%s (%s)", rt.Title, rt.Debugger))
		flags = append(flags, "--"+rt.ImageFlag())
		envs = append(envs, "$"+rt.ImageEnv())
		for _, l := range rt.Languages {
			if !seenLang[l] {
				seenLang[l] = true
				languages = append(languages, l)
			}
		}
	}
	pkg.set("description", "Attach VS Code's debugger to a process already running in a Kubernetes pod: no restart, no image change. "+join(debuggerNames, ", ")+".")
	var breakpoints []any
	for _, l := range languages {
		o := newObject()
		o.set("language", l)
		breakpoints = append(breakpoints, o)
	}
	contributes.set("breakpoints", breakpoints)
	dbg.set("languages", languages)

	runtime := newObject()
	runtime.set("type", "string")
	runtime.set("enum", append([]any{"auto"}, names...))
	runtime.set("enumDescriptions", append([]any{autoDescription}, summaries...))
	runtime.set("default", "auto")
	runtime.set("description", "Language runtime of the target process (kdap runtimes lists them).")
	props.set("runtime", runtime)
	keep := map[string]bool{}
	for _, name := range argNames() {
		keep[name] = true
	}
	for _, rt := range runtimes.All {
		for _, a := range rt.MappingArgs {
			schema := map[string]any{"description": a.Description}
			for k, v := range a.Schema {
				schema[k] = v
			}
			props.set(a.Name, fromGo(schema))
			keep[a.Name] = true
		}
	}
	for _, k := range append([]string(nil), props.keys...) {
		if !keep[k] {
			props.remove(k) // a runtime's argument that no runtime declares any more
		}
	}
	if image := props.path("image"); image != nil {
		image.set("description", fmt.Sprintf("Debugger image to inject. Default: kdap's %s (%s).", join(flags, " / "), join(envs, ", ")))
	}
	for _, s := range anySlice(dbg.get("configurationSnippets")) {
		body := s.(*object).path("body")
		if body != nil && body.get("runtime") != nil {
			body.set("runtime", "${3|auto,"+join(names, ",")+"|}")
		}
	}
	return format(pkg)
}

// argNames are the json names of kdap's own attach arguments (attach.Args).
func argNames() []string {
	var out []string
	t := reflect.TypeOf(attach.Args{})
	for i := 0; i < t.NumField(); i++ {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); name != "" && name != "-" {
			out = append(out, name)
		}
	}
	return out
}

func anySlice(v any) []any {
	s, _ := v.([]any)
	return s
}

func join(v []any, sep string) string {
	s := make([]string, len(v))
	for i, e := range v {
		s[i] = fmt.Sprint(e)
	}
	return strings.Join(s, sep)
}

// sortedKeys orders a schema fragment's keys: type and description first,
// then the rest alphabetically.
func sortedKeys(m map[string]any) []string {
	rank := map[string]int{"type": 0, "description": 1}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		ri, iok := rank[keys[i]]
		rj, jok := rank[keys[j]]
		switch {
		case iok && jok:
			return ri < rj
		case iok != jok:
			return iok
		}
		return keys[i] < keys[j]
	})
	return keys
}
