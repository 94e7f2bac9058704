package flamegraph

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"

	"github.com/google/pprof/profile"
)

// FromCPUProfile reads a V8 .cpuprofile (Chrome DevTools' and Node.js's
// format): a tree of call frames, each with its hit count. Frames are
// named "function (file:line)"; V8's (program), (idle) and (garbage
// collector) pseudo-frames are kept, as DevTools shows them.
func FromCPUProfile(r io.Reader) (*Stacks, error) {
	var p struct {
		Nodes []struct {
			ID        int `json:"id"`
			CallFrame struct {
				FunctionName string `json:"functionName"`
				URL          string `json:"url"`
				LineNumber   int    `json:"lineNumber"`
			} `json:"callFrame"`
			HitCount int   `json:"hitCount"`
			Children []int `json:"children"`
		} `json:"nodes"`
	}
	if err := json.NewDecoder(r).Decode(&p); err != nil {
		return nil, fmt.Errorf("not a .cpuprofile: %w", err)
	}
	parent := map[int]int{}
	byID := map[int]int{}
	for i, n := range p.Nodes {
		byID[n.ID] = i
		for _, c := range n.Children {
			parent[c] = n.ID
		}
	}
	s := &Stacks{}
	for _, n := range p.Nodes {
		if n.HitCount == 0 {
			continue
		}
		var frames []string
		for id, ok := n.ID, true; ok; id, ok = parent[id] {
			f := p.Nodes[byID[id]].CallFrame
			if f.FunctionName == "(root)" {
				break
			}
			frames = append(frames, frameName(f.FunctionName, f.URL, f.LineNumber+1))
		}
		reverse(frames)
		s.Add(frames, n.HitCount)
	}
	return s, nil
}

// FromPprof reads a pprof profile (gzipped or not) by its first sample
// value; inlined calls are frames of their own, as pprof shows them.
func FromPprof(r io.Reader) (*Stacks, error) {
	p, err := profile.Parse(r)
	if err != nil {
		return nil, fmt.Errorf("not a pprof profile: %w", err)
	}
	s := &Stacks{}
	for _, sm := range p.Sample {
		var frames []string
		for i := len(sm.Location) - 1; i >= 0; i-- { // pprof lists the leaf first
			lines := sm.Location[i].Line
			for j := len(lines) - 1; j >= 0; j-- { // and inlined calls before their caller
				if f := lines[j].Function; f != nil {
					frames = append(frames, f.Name)
				}
			}
		}
		if len(sm.Value) > 0 {
			s.Add(frames, int(sm.Value[0]))
		}
	}
	return s, nil
}

// FromCollapsed reads collapsed stacks: "a;b;c 12" per line.
func FromCollapsed(r io.Reader) (*Stacks, error) {
	s := &Stacks{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		n, err := strconv.Atoi(line[i+1:])
		if i < 0 || err != nil {
			return nil, fmt.Errorf("collapsed stacks: line %q has no count", line)
		}
		s.Add(strings.Split(line[:i], ";"), n)
	}
	return s, sc.Err()
}

func frameName(function, url string, line int) string {
	if function == "" {
		function = "(anonymous)"
	}
	if url == "" || strings.HasPrefix(function, "(") && line <= 0 {
		return function
	}
	return fmt.Sprintf("%s (%s:%d)", function, path.Base(url), line)
}

func reverse(s []string) {
	for i, j := 0, len(s)-1; i < j; i, j = i+1, j-1 {
		s[i], s[j] = s[j], s[i]
	}
}
