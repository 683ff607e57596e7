package progress

import (
	"sync"
	"time"
)

// Phase is where the work a Meter follows is.
type Phase int

// The phases, in order.
const (
	Working  Phase = iota // reading or writing: the figures move
	Storing               // all is read; the server stores it (nothing moves but the clock)
	Finished              // done
)

// Meter follows one piece of work (a source loaded, a table dumped) and
// words it as one status line, for example
//
//	load Observation.ndjson.gz  412,000 lines  310 MB/810 MB  38%  95 MB/s  ETA 5s
//	load Observation.ndjson.gz  1,011,108 lines  810 MB  storing… 14s
//	dump Observation  412,000 rows  41%  310 MB  52,300 rows/s  ETA 6s
//
// One goroutine may update it while another draws it.
type Meter struct {
	mu          sync.Mutex
	head, unit  string
	name        string
	n, total    int64 // items (lines, rows) so far, and how many to expect (<= 0: unknown)
	bytes, size int64 // bytes so far, and how many to expect (<= 0: unknown)
	hasBytes    bool  // bytes are counted
	phase       Phase
	start, at   time.Time // of the work; of its phase
	items, data Rate

	// Now is the clock (tests set it).
	Now func() time.Time
}

// NewMeter is a Meter whose lines begin with head ("load ", "dump ") and
// count items called unit ("lines", "rows").
func NewMeter(head, unit string) *Meter {
	return &Meter{head: head, unit: unit, Now: time.Now}
}

// Begin starts a new piece of work called name, with total items and size
// bytes to expect (<= 0 when unknown); its figures start from zero.
func (m *Meter) Begin(name string, total, size int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.Now()
	m.name, m.total, m.size = name, total, size
	m.n, m.bytes, m.hasBytes, m.phase = 0, 0, size > 0, Working
	m.start, m.at = now, now
	m.items, m.data = Rate{}, Rate{}
	m.items.Add(now, 0)
	m.data.Add(now, 0)
}

// Name is what the work is called (as Begin was told).
func (m *Meter) Name() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.name
}

// Update sets how many items and bytes are done; bytes < 0: not counted.
func (m *Meter) Update(n, bytes int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.Now()
	m.n = n
	m.items.Add(now, n)
	if bytes >= 0 {
		m.bytes, m.hasBytes = bytes, true
		m.data.Add(now, bytes)
	}
}

// SetPhase moves the work to phase p (its clock starts again).
func (m *Meter) SetPhase(p Phase) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if p != m.phase {
		m.phase, m.at = p, m.Now()
	}
}

// Line is the work as one line at most width cells wide.
func (m *Meter) Line(width int) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.Now()
	count := Field{Text: Plural(m.n, m.unit), Drop: 2}
	var bytes Field
	if m.hasBytes {
		bytes = Field{Text: Bytes(m.bytes), Drop: 4}
	}
	switch m.phase {
	case Storing:
		if m.size > 0 {
			bytes.Text = Bytes(m.size)
		}
		return Line(width, m.head, m.name, count, bytes, Field{Text: "storing… " + Clock(now.Sub(m.at))})
	case Finished:
		return Line(width, m.head, m.name, count, bytes, Field{Text: "done in " + Took(m.at.Sub(m.start))})
	}
	var pct, rate, eta Field
	elapsed := Field{Text: Clock(now.Sub(m.start)) + " elapsed", Drop: 6}
	byteRate, itemRate := m.data.PerSecond(now), m.items.PerSecond(now)
	switch {
	case m.size > 0 && m.hasBytes:
		bytes.Text = BytesOf(min(m.bytes, m.size), m.size)
		pct = Field{Text: Percent(m.bytes, m.size), Drop: 1}
		eta = Field{Text: ETA(float64(m.size-m.bytes), byteRate), Drop: 3}
	case m.total > 0 && m.n <= m.total:
		pct = Field{Text: Percent(m.n, m.total), Drop: 1}
		eta = Field{Text: ETA(float64(m.total-m.n), itemRate), Drop: 3}
	}
	switch {
	case m.hasBytes && byteRate > 0:
		rate = Field{Text: ByteRate(byteRate), Drop: 5}
	case itemRate > 0:
		rate = Field{Text: PerSecond(itemRate, m.unit), Drop: 5}
	}
	if eta.Text == "" {
		elapsed.Drop = 3 // the only clock on the line
	}
	return Line(width, m.head, m.name, count, bytes, pct, rate, eta, elapsed)
}

// Rate measures how fast a figure grows, over the last few seconds.
// Its zero value is ready to use.
type Rate struct {
	samples [rateSamples]sample // a ring, oldest first from next
	next, n int
	last    sample
}

type sample struct {
	t time.Time
	v int64
}

const (
	rateSamples = 64
	rateEvery   = 100 * time.Millisecond // samples kept at most this often
	rateWindow  = 5 * time.Second
)

// Add records the figure v at t.
func (r *Rate) Add(t time.Time, v int64) {
	r.last = sample{t, v}
	if r.n > 0 && t.Sub(r.samples[(r.next+rateSamples-1)%rateSamples].t) < rateEvery {
		return
	}
	r.samples[r.next] = r.last
	r.next = (r.next + 1) % rateSamples
	r.n = min(r.n+1, rateSamples)
}

// PerSecond is how fast the figure grew over the last few seconds up to
// now: the growth since the oldest sample in that window (or the newest
// before it) over the time since. It falls to 0 when the figure stops
// moving, and is 0 (unknown) in the first half second.
func (r *Rate) PerSecond(now time.Time) float64 {
	if r.n == 0 {
		return 0
	}
	base := r.samples[(r.next+rateSamples-r.n)%rateSamples]
	for i := r.n; i > 0; i-- {
		s := r.samples[(r.next+rateSamples-i)%rateSamples]
		if now.Sub(s.t) <= rateWindow {
			break
		}
		base = s
	}
	dt := now.Sub(base.t).Seconds()
	if dt < 0.5 || r.last.v <= base.v {
		return 0
	}
	return float64(r.last.v-base.v) / dt
}
