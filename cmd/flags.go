package cmd

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fhirbulk/fhirbulk/pkg/ndjson"
	"github.com/fhirbulk/fhirbulk/pkg/sink"
	"github.com/fhirbulk/fhirbulk/pkg/source"
)

// readFlags are the flags of every command that reads sources.
type readFlags struct {
	idleTimeout time.Duration
	maxLine     sizeValue
}

func (r *readFlags) register(c *cobra.Command) {
	r.maxLine = 256 << 20
	c.Flags().DurationVar(&r.idleTimeout, "http-idle-timeout", time.Minute,
		"give up on an http(s) source silent for `DURATION` (after retries; 0: wait forever)")
	c.Flags().Var(&r.maxLine, "max-line-size", "refuse lines longer than `SIZE` (e.g. 64MiB, 1GB)")
}

// check validates the values; call it in RunE.
func (r *readFlags) check() error {
	if r.idleTimeout < 0 {
		return usagef("--http-idle-timeout: must not be negative")
	}
	if r.maxLine <= 0 {
		return usagef("--max-line-size: must be more than 0")
	}
	return nil
}

func (r *readFlags) sourceOptions(a *app) source.Options {
	idle := r.idleTimeout
	if idle == 0 {
		idle = -1 // source.Options: negative is no bound
	}
	return source.Options{Stdin: a.stdin, IdleTimeout: idle}
}

// uploadFlags tune the uploads to a bucket of every command that writes
// one (an output URL, an export to a prefix, load --errors).
type uploadFlags struct {
	partSize    sizeValue
	concurrency int
}

func (u *uploadFlags) register(c *cobra.Command) {
	u.partSize = sink.DefaultPartSize
	c.Flags().Var(&u.partSize, "part-size", "upload to a bucket in parts of `SIZE` (5MiB to 5GiB; memory: about part-size x (part-concurrency + 1) per file)")
	c.Flags().IntVar(&u.concurrency, "part-concurrency", sink.DefaultConcurrency, "upload `N` parts of a file at once")
}

// upload checks the values and gives them to a sink.
func (u *uploadFlags) upload() (sink.Upload, error) {
	switch {
	case u.partSize < sink.MinPartSize || u.partSize > 5<<30:
		return sink.Upload{}, usagef("--part-size: %s is not between 5 MiB and 5 GiB (S3's bounds for a part)", u.partSize.String())
	case u.concurrency < 1 || u.concurrency > 64:
		return sink.Upload{}, usagef("--part-concurrency: %d is not between 1 and 64", u.concurrency)
	}
	return sink.Upload{PartSize: int(u.partSize), Concurrency: u.concurrency}, nil
}

// sizeValue is a flag holding a byte count, given as 1048576, 512KiB,
// 64MiB, 1GiB (powers of 1024) or 500kB, 500MB, 1GB (powers of 1000).
type sizeValue int64

func (s *sizeValue) String() string { return ndjson.FormatSize(int64(*s)) }
func (s *sizeValue) Type() string   { return "SIZE" }

func (s *sizeValue) Set(v string) error {
	n, err := parseSize(v)
	if err != nil {
		return err
	}
	*s = sizeValue(n)
	return nil
}

// text is the size as a flag can be given again: 1GiB, 500000000 (no
// space, which String's "1 GiB" has).
func (s *sizeValue) text() string {
	return strings.ReplaceAll(strings.TrimSuffix(strings.TrimSuffix(ndjson.FormatSize(int64(*s)), " bytes"), " byte"), " ", "")
}

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"kB", 1e3}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40},
	{"B", 1}, {"", 1},
}

// parseSize reads a size such as 256MiB, 1.5GB or 1048576.
func parseSize(v string) (int64, error) {
	t := strings.TrimSpace(v)
	for _, u := range sizeUnits {
		num, ok := strings.CutSuffix(t, u.suffix)
		if !ok {
			continue
		}
		num = strings.TrimSpace(num)
		if n, err := strconv.ParseInt(num, 10, 64); err == nil && n >= 0 {
			if n > (1<<63-1)/u.mult {
				return 0, fmt.Errorf("%q is too large", v)
			}
			return n * u.mult, nil
		}
		if f, err := strconv.ParseFloat(num, 64); err == nil && f >= 0 && f*float64(u.mult) < 1<<62 {
			return int64(f * float64(u.mult)), nil
		}
		break
	}
	return 0, fmt.Errorf("%q is not a size (e.g. 256MiB, 500MB, 1GiB)", v)
}
