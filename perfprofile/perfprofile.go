// Package perfprofile samples a running process's user-space stacks with
// Linux perf events — the kernel interrupts each thread every period of
// its CPU time and walks its frame pointers, as `perf record -g` does,
// without stopping the process — and writes the samples as a pprof
// profile symbolized from the executable's Go symbol table (pclntab,
// which even stripped Go binaries keep). `go tool pprof` reads it.
//
// It needs perf_event_open on the target: the same user (or
// CAP_PERFMON) with kernel.perf_event_paranoid ≤ 2, and a seccomp
// profile that allows the call.
package perfprofile

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Options say how to sample.
type Options struct {
	Duration time.Duration
	Period   time.Duration // of each thread's CPU time between samples (default 10 ms: 100 Hz)
}

// Samples are the stacks sampled, leaf first, as program counters.
type Samples struct {
	PID      int
	Period   time.Duration
	Duration time.Duration
	Stacks   map[string]*Stack // by the stack's PCs
	Lost     uint64            // samples the kernel dropped (ring full)
	Threads  int               // threads sampled
}

// Stack is one distinct stack and how often it was sampled.
type Stack struct {
	PCs   []uint64 // leaf first; return addresses above the leaf
	Count int64
}

// ringPages is the size of each thread's ring buffer in pages (a sample of
// a 64-frame stack takes ≈ 560 bytes; the rings are read every 100 ms).
const ringPages = 16

// Record samples every thread of pid (those started meanwhile too, found
// every 100 ms) for opts.Duration, or until ctx ends.
func Record(ctx context.Context, pid int, opts Options) (*Samples, error) {
	if opts.Period <= 0 {
		opts.Period = 10 * time.Millisecond
	}
	s := &Samples{PID: pid, Period: opts.Period, Stacks: map[string]*Stack{}}
	rings := map[int]*ring{}
	defer func() {
		for _, r := range rings {
			r.close()
		}
	}()
	open := func() error {
		tids, err := threads(pid)
		if err != nil {
			return err
		}
		for _, tid := range tids {
			if rings[tid] != nil {
				continue
			}
			r, err := openRing(tid, opts.Period)
			if err != nil {
				if len(rings) == 0 && !errors.Is(err, unix.ESRCH) {
					return permissionError(pid, err)
				}
				continue // the thread ended meanwhile
			}
			rings[tid] = r
		}
		return nil
	}
	if err := open(); err != nil {
		return nil, err
	}
	start := time.Now()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(opts.Duration)
	for done := false; !done; {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-deadline:
			done = true
		case <-tick.C:
			open()
		}
		for _, r := range rings {
			r.drain(s)
		}
	}
	s.Duration = time.Since(start)
	s.Threads = len(rings)
	return s, nil
}

// threads lists pid's thread ids.
func threads(pid int) ([]int, error) {
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return nil, fmt.Errorf("listing the target's threads: %w", err)
	}
	var tids []int
	for _, e := range entries {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			tids = append(tids, tid)
		}
	}
	return tids, nil
}

func permissionError(pid int, err error) error {
	paranoid, _ := os.ReadFile("/proc/sys/kernel/perf_event_paranoid")
	return fmt.Errorf("perf_event_open on pid %d: %v — CPU sampling needs the debugger container to run as the target's user (or with CAP_PERFMON), the node's kernel.perf_event_paranoid at 2 or less (it is %s), and a seccomp profile that allows perf_event_open",
		pid, err, trimNL(string(paranoid)))
}

func trimNL(s string) string {
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == ' ') {
		s = s[:len(s)-1]
	}
	if s == "" {
		return "unknown"
	}
	return s
}

// ring is one thread's perf event and its mmapped ring buffer.
type ring struct {
	fd   int
	mem  []byte
	meta *unix.PerfEventMmapPage
	data []byte
}

func openRing(tid int, period time.Duration) (*ring, error) {
	attr := unix.PerfEventAttr{
		Type:        unix.PERF_TYPE_SOFTWARE,
		Config:      unix.PERF_COUNT_SW_TASK_CLOCK,
		Size:        uint32(unsafe.Sizeof(unix.PerfEventAttr{})),
		Sample:      uint64(period.Nanoseconds()),
		Sample_type: unix.PERF_SAMPLE_IP | unix.PERF_SAMPLE_TID | unix.PERF_SAMPLE_CALLCHAIN,
		Bits:        unix.PerfBitDisabled | unix.PerfBitExcludeKernel | unix.PerfBitExcludeHv | unix.PerfBitExcludeCallchainKernel,
	}
	fd, err := unix.PerfEventOpen(&attr, tid, -1, -1, unix.PERF_FLAG_FD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	page := os.Getpagesize()
	mem, err := unix.Mmap(fd, 0, (1+ringPages)*page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("mapping the perf ring: %w", err)
	}
	r := &ring{fd: fd, mem: mem, meta: (*unix.PerfEventMmapPage)(unsafe.Pointer(&mem[0]))}
	r.data = mem[page:]
	if err := unix.IoctlSetInt(fd, unix.PERF_EVENT_IOC_ENABLE, 0); err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

func (r *ring) close() {
	unix.IoctlSetInt(r.fd, unix.PERF_EVENT_IOC_DISABLE, 0)
	unix.Munmap(r.mem)
	unix.Close(r.fd)
}

// drain reads the records the kernel has written since the last drain.
func (r *ring) drain(s *Samples) {
	head := atomic.LoadUint64(&r.meta.Data_head)
	tail := r.meta.Data_tail
	size := uint64(len(r.data))
	read := func(off, n uint64) []byte {
		b := make([]byte, n)
		for i := uint64(0); i < n; i++ {
			b[i] = r.data[(off+i)%size]
		}
		return b
	}
	for tail+8 <= head {
		hdr := read(tail, 8)
		typ := le32(hdr[0:])
		recSize := uint64(le16(hdr[6:]))
		if recSize < 8 || tail+recSize > head {
			break
		}
		body := read(tail+8, recSize-8)
		switch typ {
		case unix.PERF_RECORD_SAMPLE:
			s.add(body)
		case unix.PERF_RECORD_LOST:
			if len(body) >= 16 {
				s.Lost += le64(body[8:])
			}
		}
		tail += recSize
	}
	atomic.StoreUint64(&r.meta.Data_tail, tail)
}

// add counts one PERF_RECORD_SAMPLE body: ip, pid, tid, nr, ips[nr].
func (s *Samples) add(b []byte) {
	if len(b) < 24 {
		return
	}
	nr := le64(b[16:])
	if uint64(len(b)) < 24+8*nr {
		return
	}
	var pcs []uint64
	for i := uint64(0); i < nr; i++ {
		pc := le64(b[24+8*i:])
		if pc >= contextMax { // a context marker (PERF_CONTEXT_USER, …)
			continue
		}
		pcs = append(pcs, pc)
	}
	if len(pcs) == 0 {
		pcs = []uint64{le64(b[0:])}
	}
	key := fmt.Sprint(pcs)
	st := s.Stacks[key]
	if st == nil {
		st = &Stack{PCs: pcs}
		s.Stacks[key] = st
	}
	st.Count++
}

// contextMax is PERF_CONTEXT_MAX (-4095) as the kernel writes it: values
// from it up mark where a callchain's kernel or user part starts.
const contextMax = ^uint64(-unix.PERF_CONTEXT_MAX - 1)

func le16(b []byte) uint16 { return uint16(b[0]) | uint16(b[1])<<8 }
func le32(b []byte) uint32 { return uint32(le16(b)) | uint32(le16(b[2:]))<<16 }
func le64(b []byte) uint64 { return uint64(le32(b)) | uint64(le32(b[4:]))<<32 }
