package progress

import (
	"io"
	"strings"
	"sync"
	"time"
)

// Tick is how often a Live display redraws itself.
const Tick = 200 * time.Millisecond

// Live is a Block that redraws itself every tick from what render returns,
// so that its clock and figures keep moving while the work it follows says
// nothing (a server storing what it was sent, a slow source). It draws
// first after one tick: work done sooner leaves nothing to see. A nil *Live
// does nothing, so callers need not ask whether progress is shown.
type Live struct {
	mu     sync.Mutex
	block  screen
	render func(width, lines int) []string
	ended  bool

	stop chan struct{}
	done chan struct{}
}

// Start shows render's lines on the terminal w, redrawn every tick, until
// Stop. render is given the room there is (Block.Room) and is called from
// one goroutine at a time.
func Start(w io.Writer, render func(width, lines int) []string) *Live {
	return StartBlock(NewBlock(w), Tick, render)
}

// StartLine shows one status line, render's, on the terminal w, redrawn
// every tick until Stop. It is drawn by progressbar/v3 (with a spinner, the
// row erased at each redraw), the words fitted to the terminal's width so
// that it never wraps.
func StartLine(w io.Writer, render func(width int) string) *Live {
	return StartBlock(newBarLine(w), Tick, func(width, _ int) []string {
		if line := render(width); line != "" {
			return []string{line}
		}
		return nil
	})
}

// screen is where a Live draws: a Block, or a barLine.
type screen interface {
	Room() (width, lines int)
	Draw(lines []string) error
	Clear() error
	Drawn() int
	writer() io.Writer
}

// StartBlock is Start on a screen made by the caller (a Block), redrawn
// every tick.
func StartBlock(b screen, tick time.Duration, render func(width, lines int) []string) *Live {
	l := &Live{block: b, render: render, stop: make(chan struct{}), done: make(chan struct{})}
	go l.run(tick)
	return l
}

func (l *Live) run(tick time.Duration) {
	defer close(l.done)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			l.Redraw()
		}
	}
}

// Redraw draws the lines now.
func (l *Live) Redraw() {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.ended {
		l.draw()
	}
}

func (l *Live) draw() {
	w, n := l.block.Room()
	l.block.Draw(l.render(w, n)) // a display: nothing to do when it cannot draw
}

// Println shows a message above the lines, for good: the lines are cleared,
// the message written, and the lines drawn again below it.
func (l *Live) Println(msg string) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	had := l.block.Drawn() > 0
	l.block.Clear()
	io.WriteString(l.block.writer(), strings.TrimSuffix(msg, "\n")+"\n")
	if had && !l.ended {
		l.draw()
	}
}

// Stop ends the display and clears its lines: nothing of it is left on
// screen, and the cursor is where its first line began. It may be called
// more than once.
func (l *Live) Stop() {
	if l == nil {
		return
	}
	l.mu.Lock()
	if l.ended {
		l.mu.Unlock()
		return
	}
	l.ended = true
	l.mu.Unlock()
	close(l.stop)
	<-l.done
	l.mu.Lock()
	l.block.Clear()
	l.mu.Unlock()
}
