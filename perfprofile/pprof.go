package perfprofile

import (
	"bufio"
	"debug/elf"
	"debug/gosym"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/pprof/profile"
)

// WritePprof writes the samples as a gzipped pprof profile (samples/count
// and cpu/nanoseconds), each frame symbolized from the Go symbol table of
// the process's executable; frames outside it are named by their mapping
// ("[libc.so.6]").
func (s *Samples) WritePprof(w io.Writer) error {
	sym, err := newSymbolizer(s.PID)
	if err != nil {
		return err
	}
	p := &profile.Profile{
		SampleType:    []*profile.ValueType{{Type: "samples", Unit: "count"}, {Type: "cpu", Unit: "nanoseconds"}},
		PeriodType:    &profile.ValueType{Type: "cpu", Unit: "nanoseconds"},
		Period:        s.Period.Nanoseconds(),
		TimeNanos:     time.Now().Add(-s.Duration).UnixNano(),
		DurationNanos: s.Duration.Nanoseconds(),
	}
	mapping := &profile.Mapping{ID: 1, File: sym.exe, HasFunctions: true, HasFilenames: true, HasLineNumbers: true}
	p.Mapping = []*profile.Mapping{mapping}
	locations := map[uint64]*profile.Location{}
	functions := map[string]*profile.Function{}
	for _, st := range s.Stacks {
		sample := &profile.Sample{Value: []int64{st.Count, st.Count * s.Period.Nanoseconds()}}
		for i, pc := range st.PCs {
			if i > 0 {
				pc-- // a return address: the call is the instruction before it
			}
			loc := locations[pc]
			if loc == nil {
				fn, file, line := sym.lookup(pc)
				f := functions[fn+"\x00"+file]
				if f == nil {
					f = &profile.Function{ID: uint64(len(functions) + 1), Name: fn, SystemName: fn, Filename: file}
					functions[fn+"\x00"+file] = f
					p.Function = append(p.Function, f)
				}
				loc = &profile.Location{ID: uint64(len(locations) + 1), Mapping: mapping, Address: pc, Line: []profile.Line{{Function: f, Line: int64(line)}}}
				locations[pc] = loc
				p.Location = append(p.Location, loc)
			}
			sample.Location = append(sample.Location, loc)
		}
		p.Sample = append(p.Sample, sample)
	}
	if err := p.CheckValid(); err != nil {
		return err
	}
	return p.Write(w)
}

// symbolizer maps the process's PCs to functions and lines.
type symbolizer struct {
	exe   string
	table *gosym.Table // nil if the executable has no Go symbol table
	bias  uint64       // load address minus link address (position-independent executables)
	maps  []mapping
}

type mapping struct {
	start, end uint64
	file       string
	offset0    bool // maps the file from its start
}

func newSymbolizer(pid int) (*symbolizer, error) {
	exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	s := &symbolizer{exe: exe}
	s.maps = readMaps(pid)
	f, err := elf.Open(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return nil, fmt.Errorf("reading the target's executable: %w", err)
	}
	defer f.Close()
	if pcln := f.Section(".gopclntab"); pcln != nil {
		data, err := pcln.Data()
		text := f.Section(".text")
		if err == nil && text != nil {
			var symtab []byte
			if st := f.Section(".gosymtab"); st != nil {
				symtab, _ = st.Data()
			}
			s.table, _ = gosym.NewTable(symtab, gosym.NewLineTable(data, text.Addr))
		}
	}
	if f.Type == elf.ET_DYN {
		for _, p := range f.Progs {
			if p.Type == elf.PT_LOAD && p.Off == 0 {
				for _, m := range s.maps {
					if m.file == exe && m.offset0 {
						s.bias = m.start - p.Vaddr
						break
					}
				}
				break
			}
		}
	}
	return s, nil
}

func (s *symbolizer) lookup(pc uint64) (fn, file string, line int) {
	if s.table != nil {
		if file, line, f := s.table.PCToLine(pc - s.bias); f != nil {
			return f.Name, file, line
		}
	}
	for _, m := range s.maps {
		if pc >= m.start && pc < m.end && m.file != "" {
			return "[" + filepath.Base(m.file) + "]", m.file, 0
		}
	}
	return fmt.Sprintf("0x%x", pc), "", 0
}

// readMaps reads the process's executable mappings from /proc/PID/maps.
func readMaps(pid int) []mapping {
	f, err := os.Open(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []mapping
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		lo, hi, _ := strings.Cut(fields[0], "-")
		start, _ := strconv.ParseUint(lo, 16, 64)
		end, _ := strconv.ParseUint(hi, 16, 64)
		m := mapping{start: start, end: end, offset0: fields[2] == "00000000"}
		if len(fields) >= 6 {
			m.file = fields[5]
		}
		out = append(out, m)
	}
	return out
}
