package cmd

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/fhirbulk/fhirbulk/pkg/bulkimport"
	"github.com/fhirbulk/fhirbulk/pkg/progress"
)

// importView is what import (in the foreground) and status --watch draw of
// an import: a header, then a line per input, each fitted to the width, the
// inputs at work first when they do not all fit:
//
//	import synthea  in-progress  1/3 inputs  13 resources  1m04s elapsed
//	  finished     Patient      Patient.ndjson.gz      13 resources in 0.2s
//	  in-progress  Observation  …ervation.ndjson.gz    412,000 lines  38%  ETA 5s
//	  in-progress  Condition    Condition.ndjson.gz    1,200 lines  storing… 3s
//	  pending      Procedure    Procedure.ndjson.gz
//
// It measures each input's rate from the states it is shown, and when it
// saw the input begin to store.
type importView struct {
	mu     sync.Mutex
	st     *bulkimport.State
	inputs map[int]*inputWatch
}

// inputWatch is what the view measured of one input at work.
type inputWatch struct {
	rate    progress.Rate
	bytes   int64
	storing time.Time // when the input was seen to begin storing (zero: not seen)
	seen    bool      // it was seen reading (so the start of storing is known)
}

func newImportView() *importView { return &importView{inputs: map[int]*inputWatch{}} }

// observe records st, as it was at now.
func (v *importView) observe(st *bulkimport.State, now time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.st = st
	for i, in := range st.Inputs {
		w := v.inputs[i]
		if in.Status != bulkimport.StatusInProgress {
			delete(v.inputs, i)
			continue
		}
		if w == nil || in.BytesRead < w.bytes { // new, or read again from the start
			w = &inputWatch{}
			v.inputs[i] = w
			w.rate.Add(now, in.BytesRead)
		}
		w.bytes = in.BytesRead
		w.rate.Add(now, in.BytesRead)
		switch {
		case !in.Storing:
			w.storing, w.seen = time.Time{}, true
		case w.seen && w.storing.IsZero():
			w.storing = now
		}
	}
}

// lines is the view at now, at most width cells wide and n lines long.
func (v *importView) lines(width, n int, now time.Time) []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	st := v.st
	if st == nil {
		return nil
	}
	done, resources := st.Done()
	var elapsed progress.Field
	if st.Time.End == nil && !st.Time.Start.IsZero() {
		elapsed = progress.Field{Text: progress.Clock(now.Sub(st.Time.Start)) + " elapsed", Drop: 2}
	}
	if p := st.Pull; p != nil && (p.Phase == bulkimport.PhaseKickOff || p.Phase == bulkimport.PhaseExport) {
		// No inputs yet: the server's export is what there is to see.
		what := "  kicking off the export at " + printable(p.KickOff)
		if p.Phase == bulkimport.PhaseExport {
			what = "  the server exports: " + pullProgress(p)
		}
		return []string{progress.Line(width, "import ", printable(st.ID), progress.Field{Text: printable(st.Status)}, elapsed),
			progress.Fit(what, width)}
	}
	out := []string{progress.Line(width, "import ", printable(st.ID),
		progress.Field{Text: printable(st.Status)},
		progress.Field{Text: fmt.Sprintf("%d/%d inputs", done, len(st.Inputs)), Drop: 1},
		progress.Field{Text: progress.Plural(resources, "resources"), Drop: 3},
		elapsed)}

	shown, hidden := pickInputs(st.Inputs, n-1)
	statusW, typeW, urlW := 0, 0, 0
	for _, i := range shown {
		in := st.Inputs[i]
		statusW = max(statusW, progress.Width(printable(in.Status)))
		typeW = max(typeW, progress.Width(printable(in.ResourceType)))
		urlW = max(urlW, progress.Width(printable(in.URL)))
	}
	// The URL gets what is left beyond 30 cells for the figures, and at
	// least 16 (a file name's end).
	room := width - 2 - statusW - 2 - typeW - 2
	urlW = min(urlW, max(room-2-30, 16))
	detailW := room - urlW - 2
	for _, i := range shown {
		in := st.Inputs[i]
		url := printable(in.URL)
		if progress.Width(url) > urlW {
			// Cut short, the file's name says more than the mark of a
			// query left out.
			url = progress.Shorten(strings.TrimSuffix(url, "?…"), urlW)
		}
		line := "  " + pad(printable(in.Status), statusW) + "  " + pad(printable(in.ResourceType), typeW) + "  " + pad(url, urlW)
		if d := v.detail(i, in, max(detailW, 0), now); d != "" {
			line += "  " + d
		}
		out = append(out, progress.Fit(strings.TrimRight(line, " "), width))
	}
	if len(hidden) > 0 {
		out = append(out, "  … "+hiddenSummary(st.Inputs, hidden))
	}
	return out
}

// detail is the figures of input i, at most w cells wide.
func (v *importView) detail(i int, in bulkimport.InputState, w int, now time.Time) string {
	switch in.Status {
	case bulkimport.StatusFinished:
		return progress.Fit(progress.Plural(in.Total, "resources")+" in "+progress.Took(time.Duration(in.Duration)*time.Millisecond), w)
	case bulkimport.StatusFailed:
		return progress.Fit(printable(in.Error), w)
	case bulkimport.StatusInProgress:
	default:
		return ""
	}
	lines := progress.Field{Text: progress.Plural(in.Total, "lines"), Drop: 2}
	watch := v.inputs[i]
	if in.Storing {
		storing := "storing…"
		if watch != nil && !watch.storing.IsZero() {
			storing += " " + progress.Clock(now.Sub(watch.storing))
		}
		return progress.Line(w, "", "", lines, progress.Field{Text: progress.Bytes(in.BytesRead), Drop: 4}, progress.Field{Text: storing})
	}
	var perSecond float64
	if watch != nil {
		perSecond = watch.rate.PerSecond(now)
	}
	var rate progress.Field
	if perSecond > 0 {
		rate = progress.Field{Text: progress.ByteRate(perSecond), Drop: 5}
	}
	if in.BytesTotal <= 0 {
		return progress.Line(w, "", "", lines, progress.Field{Text: progress.Bytes(in.BytesRead), Drop: 4}, rate)
	}
	return progress.Line(w, "", "", lines,
		progress.Field{Text: progress.BytesOf(min(in.BytesRead, in.BytesTotal), in.BytesTotal), Drop: 4},
		progress.Field{Text: progress.Percent(in.BytesRead, in.BytesTotal), Drop: 1},
		rate,
		progress.Field{Text: progress.ETA(float64(in.BytesTotal-in.BytesRead), perSecond), Drop: 3})
}

// pickInputs chooses the inputs that fit in n lines, in their order: all of
// them, or the ones at work and the failed ones first, then the others,
// with a line kept to say what is left out (hidden).
func pickInputs(inputs []bulkimport.InputState, n int) (shown, hidden []int) {
	if len(inputs) <= n {
		for i := range inputs {
			shown = append(shown, i)
		}
		return shown, nil
	}
	n = max(n-1, 0)
	take := make([]bool, len(inputs))
	count := 0
	for _, first := range []bool{true, false} {
		for i, in := range inputs {
			busy := in.Status == bulkimport.StatusInProgress || in.Status == bulkimport.StatusFailed
			if count < n && !take[i] && busy == first {
				take[i] = true
				count++
			}
		}
	}
	for i := range inputs {
		if take[i] {
			shown = append(shown, i)
		} else {
			hidden = append(hidden, i)
		}
	}
	return shown, hidden
}

// hiddenSummary says what inputs are left out: "4,990 more: 4,000 finished, 990 pending".
func hiddenSummary(inputs []bulkimport.InputState, hidden []int) string {
	order := []string{bulkimport.StatusInProgress, bulkimport.StatusFailed, bulkimport.StatusFinished, bulkimport.StatusPending}
	counts := map[string]int64{}
	for _, i := range hidden {
		s := inputs[i].Status
		if _, known := counts[s]; !known && !contains(order, s) {
			order = append(order, s)
		}
		counts[s]++
	}
	var parts []string
	for _, s := range order {
		if counts[s] > 0 {
			parts = append(parts, progress.Count(counts[s])+" "+printable(s))
		}
	}
	return progress.Count(int64(len(hidden))) + " more: " + strings.Join(parts, ", ")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// pad is s and spaces to w cells.
func pad(s string, w int) string {
	return s + strings.Repeat(" ", max(w-progress.Width(s), 0))
}

// importDisplay is import's live view on stderr, in the foreground.
type importDisplay struct {
	view *importView
	live *progress.Live
}

// startImportDisplay is the display of an import, or nil when none is
// shown.
func (a *app) startImportDisplay() *importDisplay {
	if !a.showProgress(false) {
		return nil
	}
	d := &importDisplay{view: newImportView()}
	d.live = progress.Start(a.stderr, func(w, n int) []string { return d.view.lines(w, n, time.Now()) })
	return d
}

// progressFunc is bulkimport.Options.Progress: nil without a display.
func (d *importDisplay) progressFunc() func(bulkimport.State) {
	if d == nil {
		return nil
	}
	return func(st bulkimport.State) { d.view.observe(&st, time.Now()) }
}

// warn shows a message above the view (or on w without one).
func (d *importDisplay) warn(w io.Writer, msg string) {
	if d == nil {
		fmt.Fprintln(w, msg)
		return
	}
	d.live.Println(msg)
}

func (d *importDisplay) stop() {
	if d != nil {
		d.live.Stop()
	}
}
