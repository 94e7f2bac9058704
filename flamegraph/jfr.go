package flamegraph

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"unicode/utf16"
)

// FromJFR reads the jdk.ExecutionSample events of a Java Flight Recorder
// file (JDK 11 and later, format 2.x): every sampled Java stack, frames
// named "package.Class.method". It decodes the file by the type
// descriptions the file carries itself (its metadata), and its constant
// pools.
func FromJFR(r io.Reader) (*Stacks, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	s := &Stacks{}
	for off := 0; off < len(b); {
		n, err := readChunk(b[off:], s)
		if err != nil {
			return nil, fmt.Errorf("JFR chunk at %d: %w", off, err)
		}
		off += n
	}
	return s, nil
}

// JFRSamples is how many jdk.ExecutionSample events FromJFR counted.
func (s *Stacks) JFRSamples() int { return s.total }

const jfrHeaderSize = 68

// jfrClass is a type of the recording's metadata.
type jfrClass struct {
	name   string
	fields []jfrField
}

type jfrField struct {
	name  string
	class int64
	pool  bool // the value is a key into the constant pool of class
	array bool
}

// jfrRef is a constant pool reference, resolved when used.
type jfrRef struct {
	class int64
	key   int64
}

// jfrChunk decodes one chunk.
type jfrChunk struct {
	b          []byte
	compressed bool
	classes    map[int64]*jfrClass
	pools      map[int64]map[int64]any
}

func readChunk(b []byte, s *Stacks) (int, error) {
	if len(b) < jfrHeaderSize || string(b[:4]) != "FLR\x00" {
		return 0, errors.New("not a JFR file (no FLR magic)")
	}
	if major := binary.BigEndian.Uint16(b[4:]); major != 2 {
		return 0, fmt.Errorf("JFR format %d.x: kdap reads 2.x (JDK 11 and later)", major)
	}
	size := int(binary.BigEndian.Uint64(b[8:]))
	cpOffset := int(binary.BigEndian.Uint64(b[16:]))
	metaOffset := int(binary.BigEndian.Uint64(b[24:]))
	features := binary.BigEndian.Uint32(b[64:])
	if size < jfrHeaderSize || size > len(b) || cpOffset >= size || metaOffset >= size {
		return 0, fmt.Errorf("chunk size %d, constant pools at %d, metadata at %d: the file is cut short", size, cpOffset, metaOffset)
	}
	c := &jfrChunk{b: b[:size], compressed: features&1 != 0, classes: map[int64]*jfrClass{}, pools: map[int64]map[int64]any{}}
	if err := c.readMetadata(metaOffset); err != nil {
		return 0, fmt.Errorf("metadata: %w", err)
	}
	for off := cpOffset; ; {
		delta, err := c.readCheckpoint(off)
		if err != nil {
			return 0, fmt.Errorf("constant pool at %d: %w", off, err)
		}
		if delta == 0 {
			break
		}
		off += int(delta)
		if off < jfrHeaderSize || off >= size {
			return 0, fmt.Errorf("constant pool chain leaves the chunk (%d)", off)
		}
	}
	sample := int64(-1)
	for id, cl := range c.classes {
		if cl.name == "jdk.ExecutionSample" {
			sample = id
		}
	}
	for off := jfrHeaderSize; off < size; {
		r := &jfrReader{b: c.b, p: off, compressed: c.compressed}
		n := int(r.int())
		typ := r.long()
		if r.err != nil || n <= 0 || off+n > size {
			return 0, fmt.Errorf("event at %d: size %d", off, n)
		}
		if typ == sample {
			v := c.value(r, typ)
			if r.err != nil {
				return 0, fmt.Errorf("jdk.ExecutionSample at %d: %w", off, r.err)
			}
			if ev, ok := v.(map[string]any); ok {
				s.Add(c.stack(ev["stackTrace"]), 1)
			}
		}
		off += n
	}
	return size, nil
}

// stack turns a stackTrace value into frames, root first.
func (c *jfrChunk) stack(v any) []string {
	st, _ := c.resolve(v).(map[string]any)
	frames, _ := st["frames"].([]any)
	out := make([]string, 0, len(frames))
	for i := len(frames) - 1; i >= 0; i-- { // JFR lists the top frame first
		f, _ := c.resolve(frames[i]).(map[string]any)
		m, _ := c.resolve(f["method"]).(map[string]any)
		class, _ := c.resolve(m["type"]).(map[string]any)
		out = append(out, strings.ReplaceAll(c.symbol(class["name"]), "/", ".")+"."+c.symbol(m["name"]))
	}
	return out
}

func (c *jfrChunk) symbol(v any) string {
	switch x := c.resolve(v).(type) {
	case string:
		return x
	case map[string]any:
		s, _ := c.resolve(x["string"]).(string)
		return s
	}
	return "?"
}

func (c *jfrChunk) resolve(v any) any {
	for i := 0; i < 8; i++ {
		ref, ok := v.(jfrRef)
		if !ok {
			return v
		}
		v = c.pools[ref.class][ref.key]
	}
	return v
}

// readMetadata reads the type descriptions: a string table, then an
// element tree whose "class" elements hold "field" elements.
func (c *jfrChunk) readMetadata(off int) error {
	r := &jfrReader{b: c.b, p: off, compressed: c.compressed}
	r.int()  // size
	r.long() // type: metadata
	r.long() // start time
	r.long() // duration
	r.long() // metadata id
	strs := make([]string, r.int())
	for i := range strs {
		strs[i] = r.str(nil)
	}
	if r.err != nil {
		return r.err
	}
	str := func(i int32) string {
		if i < 0 || int(i) >= len(strs) {
			return ""
		}
		return strs[i]
	}
	var element func(depth int) elem
	element = func(depth int) elem {
		e := elem{name: str(r.int()), attrs: map[string]string{}}
		for n := r.int(); n > 0 && r.err == nil; n-- {
			k, v := str(r.int()), str(r.int())
			e.attrs[k] = v
		}
		for n := r.int(); n > 0 && r.err == nil && depth < 16; n-- {
			e.children = append(e.children, element(depth+1))
		}
		return e
	}
	root := element(0)
	if r.err != nil {
		return r.err
	}
	var walk func(es []elem)
	walk = func(es []elem) {
		for _, e := range es {
			if e.name == "class" {
				cl := &jfrClass{name: e.attrs["name"]}
				for _, f := range e.children {
					if f.name == "field" {
						cl.fields = append(cl.fields, jfrField{name: f.attrs["name"], class: atoi(f.attrs["class"]),
							pool: f.attrs["constantPool"] == "true", array: f.attrs["dimension"] == "1"})
					}
				}
				c.classes[atoi(e.attrs["id"])] = cl
				continue
			}
			walk(e.children)
		}
	}
	walk(root.children)
	return nil
}

type elem struct {
	name     string
	attrs    map[string]string
	children []elem
}

func atoi(s string) int64 {
	var n int64
	fmt.Sscan(s, &n)
	return n
}

// readCheckpoint reads one checkpoint event's constant pools and returns
// the (negative) offset of the previous checkpoint, 0 for the first.
func (c *jfrChunk) readCheckpoint(off int) (int64, error) {
	r := &jfrReader{b: c.b, p: off, compressed: c.compressed}
	r.int()  // size
	r.long() // type: checkpoint
	r.long() // start time
	r.long() // duration
	delta := r.long()
	r.byte() // type mask
	for pools := r.int(); pools > 0 && r.err == nil; pools-- {
		class := r.long()
		if c.pools[class] == nil {
			c.pools[class] = map[int64]any{}
		}
		for n := r.int(); n > 0 && r.err == nil; n-- {
			key := r.long()
			c.pools[class][key] = c.value(r, class)
		}
	}
	return delta, r.err
}

// value decodes one value of class: a primitive, a string, or a struct
// of its fields (map by field name); pool fields become jfrRefs.
func (c *jfrChunk) value(r *jfrReader, class int64) any {
	cl := c.classes[class]
	if cl == nil {
		r.fail(fmt.Errorf("unknown type %d", class))
		return nil
	}
	switch cl.name {
	case "boolean":
		return r.byte() != 0
	case "byte":
		return int64(r.byte())
	case "char", "short", "int":
		return int64(r.int())
	case "long":
		return r.long()
	case "float":
		return float64(math.Float32frombits(uint32(r.fixed(4))))
	case "double":
		return math.Float64frombits(r.fixed(8))
	case "java.lang.String":
		return r.str(c)
	}
	out := make(map[string]any, len(cl.fields))
	for _, f := range cl.fields {
		one := func() any {
			if f.pool {
				return jfrRef{class: f.class, key: r.long()}
			}
			return c.value(r, f.class)
		}
		if f.array {
			n := r.int()
			arr := make([]any, 0, min(int(n), 1024))
			for i := int32(0); i < n && r.err == nil; i++ {
				arr = append(arr, one())
			}
			out[f.name] = arr
		} else {
			out[f.name] = one()
		}
		if r.err != nil {
			return nil
		}
	}
	return out
}

// jfrReader reads JFR's integers (LEB128-style when compressed, else
// big-endian) and strings from b at p; the first error sticks.
type jfrReader struct {
	b          []byte
	p          int
	compressed bool
	err        error
}

func (r *jfrReader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

func (r *jfrReader) byte() byte {
	if r.p >= len(r.b) {
		r.fail(io.ErrUnexpectedEOF)
		return 0
	}
	r.p++
	return r.b[r.p-1]
}

func (r *jfrReader) fixed(n int) uint64 {
	var v uint64
	for i := 0; i < n; i++ {
		v = v<<8 | uint64(r.byte())
	}
	return v
}

func (r *jfrReader) varint() uint64 {
	var v uint64
	for i := 0; i < 9; i++ {
		b := r.byte()
		if i == 8 {
			return v | uint64(b)<<56
		}
		v |= uint64(b&0x7f) << (7 * i)
		if b&0x80 == 0 {
			return v
		}
	}
	return v
}

func (r *jfrReader) int() int32 {
	if r.compressed {
		return int32(r.varint())
	}
	return int32(r.fixed(4))
}

func (r *jfrReader) long() int64 {
	if r.compressed {
		return int64(r.varint())
	}
	return int64(r.fixed(8))
}

// str reads a string: null, empty, a constant pool reference, UTF-8, a
// char array or Latin-1.
func (r *jfrReader) str(c *jfrChunk) string {
	switch enc := r.byte(); enc {
	case 0, 1:
		return ""
	case 2:
		key := r.long()
		if c != nil {
			for id, cl := range c.classes {
				if cl.name == "java.lang.String" {
					s, _ := c.pools[id][key].(string)
					return s
				}
			}
		}
		return ""
	case 3, 5:
		n := int(r.int())
		if n < 0 || r.p+n > len(r.b) {
			r.fail(io.ErrUnexpectedEOF)
			return ""
		}
		s := r.b[r.p : r.p+n]
		r.p += n
		if enc == 5 {
			runes := make([]rune, len(s))
			for i, ch := range s {
				runes[i] = rune(ch)
			}
			return string(runes)
		}
		return string(s)
	case 4:
		n := int(r.int())
		u := make([]uint16, 0, min(n, 1<<16))
		for i := 0; i < n && r.err == nil; i++ {
			u = append(u, uint16(r.int()))
		}
		return string(utf16.Decode(u))
	default:
		r.fail(fmt.Errorf("string encoding %d", enc))
		return ""
	}
}
