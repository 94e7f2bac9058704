// Package flamegraph draws sampled stacks as an SVG flame graph (Brendan
// Gregg's layout: the root at the bottom, callees above their callers,
// widths proportional to samples), and reads the profile formats kdap
// fetches into stacks: V8's .cpuprofile, pprof, and collapsed stacks.
package flamegraph

import (
	"fmt"
	"hash/fnv"
	"html"
	"io"
	"sort"
	"strings"
)

// Stacks counts samples by stack, each stack root first.
type Stacks struct {
	root  node
	total int
}

type node struct {
	name     string
	self     int
	total    int
	children map[string]*node
}

// Add counts n samples of the stack frames (root first).
func (s *Stacks) Add(frames []string, n int) {
	if n <= 0 {
		return
	}
	s.total += n
	s.root.total += n
	cur := &s.root
	for _, f := range frames {
		if cur.children == nil {
			cur.children = map[string]*node{}
		}
		next := cur.children[f]
		if next == nil {
			next = &node{name: f}
			cur.children[f] = next
		}
		next.total += n
		cur = next
	}
	cur.self += n
}

// Samples is the number of samples added.
func (s *Stacks) Samples() int { return s.total }

// Collapsed writes the stacks in the collapsed format ("a;b;c 12" per
// line) that flamegraph.pl, speedscope and inferno read.
func (s *Stacks) Collapsed(w io.Writer) error {
	var lines []string
	var walk func(n *node, path []string)
	walk = func(n *node, path []string) {
		if n.self > 0 && len(path) > 0 {
			lines = append(lines, fmt.Sprintf("%s %d", strings.Join(path, ";"), n.self))
		}
		for _, c := range n.children {
			walk(c, append(path[:len(path):len(path)], c.name))
		}
	}
	walk(&s.root, nil)
	sort.Strings(lines)
	for _, l := range lines {
		if _, err := fmt.Fprintln(w, l); err != nil {
			return err
		}
	}
	return nil
}

// Layout of the SVG.
const (
	width       = 1200.0
	frameHeight = 16.0
	margin      = 10.0
	minWidth    = 0.1 // frames narrower than this many pixels are left out
	charWidth   = 7.0 // of the 12px monospace font, for fitting names
)

// WriteSVG draws the stacks as a flame graph titled title. Every frame
// has a tooltip with its name, its samples and their share of the total.
func (s *Stacks) WriteSVG(w io.Writer, title string) error {
	depth := maxDepth(&s.root)
	height := float64(depth)*frameHeight + 3*margin + 2*frameHeight
	var b strings.Builder
	fmt.Fprintf(&b, `<?xml version="1.0" standalone="no"?>
<svg version="1.1" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" xmlns="http://www.w3.org/2000/svg">
<style>text { font-family: monospace; font-size: 12px; fill: #000; } rect { stroke: #fff; stroke-width: 0.5; }</style>
<rect x="0" y="0" width="100%%" height="100%%" fill="#f8f8f8" style="stroke:none"/>
<text x="%.0f" y="%.0f" style="font-size:16px">%s</text>
<text x="%.0f" y="%.0f">%d samples</text>
`, width+2*margin, height, width+2*margin, height, margin, margin+frameHeight, html.EscapeString(title), margin, margin+2*frameHeight, s.total)
	if s.total > 0 {
		scale := width / float64(s.total)
		bottom := height - margin - frameHeight
		var draw func(n *node, x float64, level int)
		draw = func(n *node, x float64, level int) {
			for _, c := range sortedChildren(n) {
				wd := float64(c.total) * scale
				if wd >= minWidth {
					y := bottom - float64(level)*frameHeight
					pct := 100 * float64(c.total) / float64(s.total)
					fmt.Fprintf(&b, `<g><title>%s (%d samples, %.2f%%)</title><rect x="%.1f" y="%.1f" width="%.1f" height="%.0f" fill="%s"/>`,
						html.EscapeString(c.name), c.total, pct, margin+x, y, wd, frameHeight, color(c.name))
					if fit := int((wd - 4) / charWidth); fit >= 3 {
						label := c.name
						if len(label) > fit {
							label = label[:fit-2] + ".."
						}
						fmt.Fprintf(&b, `<text x="%.1f" y="%.1f">%s</text>`, margin+x+2, y+frameHeight-4, html.EscapeString(label))
					}
					b.WriteString("</g>\n")
					draw(c, x, level+1)
				}
				x += wd
			}
		}
		draw(&s.root, 0, 0)
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func maxDepth(n *node) int {
	d := 0
	for _, c := range n.children {
		d = max(d, 1+maxDepth(c))
	}
	return d
}

// sortedChildren orders frames by name, as flame graphs do (so that the
// same stacks always draw the same).
func sortedChildren(n *node) []*node {
	out := make([]*node, 0, len(n.children))
	for _, c := range n.children {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// color picks a warm colour from the frame's name.
func color(name string) string {
	h := fnv.New32a()
	h.Write([]byte(name))
	v := h.Sum32()
	return fmt.Sprintf("rgb(%d,%d,%d)", 205+v%50, 80+(v>>8)%130, 30+(v>>16)%40)
}
