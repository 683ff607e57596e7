package cmd

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/fhirbulk/fhirbulk/pkg/fhirformat"
	"github.com/fhirbulk/fhirbulk/pkg/source"
)

// convertOptions are convert's flags.
type convertOptions struct {
	out           outputFlags
	in            readFlags
	to            string
	noFormatCheck bool
}

func (a *app) convertCmd() *cobra.Command {
	var opts convertOptions
	c := &cobra.Command{
		Use:   "convert --to fhir|aidbox [FILE...]",
		Short: "Convert ndjson resources between FHIR and Aidbox format",
		Long: `Convert ndjson resources between FHIR format and Aidbox format (references as
{resourceType, id}, choice elements as value: {Quantity: ...}), as a filter:
FILEs (gzip detected; - or none for stdin) to stdout or --output. No database.
A FILE whose first lines are in the format converted to already is refused.`,
		Example: `  fhirbulk convert --to aidbox patients.ndjson.gz > patients.aidbox.ndjson
  fhirbulk dump Observation | fhirbulk convert --to fhir`,
	}
	opts.out.register(c)
	opts.in.register(c)
	c.Flags().StringVar(&opts.to, "to", "", "the `FORMAT` to write: fhir or aidbox (required)")
	mustComplete(c, "to", completeValues("fhir", "aidbox"))
	c.Flags().BoolVar(&opts.noFormatCheck, "no-format-check", false, "do not check the first lines of each FILE for being in that format already")
	c.RunE = a.run(func(ctx context.Context, args []string) error {
		return a.runConvert(ctx, opts, args)
	})
	return c
}

// runConvert converts the FILEs of args (stdin when none).
func (a *app) runConvert(ctx context.Context, opts convertOptions, args []string) error {
	out, in, to := &opts.out, &opts.in, opts.to
	var dir fhirformat.Direction
	switch to {
	case "fhir":
		dir = fhirformat.ToFHIR
	case "aidbox":
		dir = fhirformat.ToAidbox
	case "":
		return usagef("--to is required: fhir or aidbox")
	default:
		return usagef("--to: %q is not fhir or aidbox", to)
	}
	if err := in.check(); err != nil {
		return err
	}
	if len(args) == 0 {
		args = []string{"-"}
	}
	if err := checkStdinOnce(args); err != nil {
		return err
	}
	start := time.Now()
	s, err := out.open(ctx, a)
	if err != nil {
		return err
	}
	defer s.Abort()
	w := &countingWriter{w: s, countLines: true}
	bar := a.startConvertDisplay(out, w)
	defer bar.stop()
	var total int64
	var names []string
	checkLines := int64(fhirformat.CheckLines)
	if opts.noFormatCheck {
		checkLines = 0
	}
	for _, spec := range args {
		src, err := source.Open(ctx, spec, in.sourceOptions(a))
		if err != nil {
			return fmt.Errorf("convert %w", err)
		}
		bar.begin(src)
		n, err := fhirformat.Stream(ctx, src, w, dir, int(in.maxLine), checkLines)
		src.Close()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var wrong *fhirformat.FormatError
			if errors.As(err, &wrong) {
				wrong.Hint = convertFormatHint(wrong.Found)
			}
			return fmt.Errorf("convert %s: %w", src.Name(), err)
		}
		total += n
		names = append(names, src.Name())
	}
	bar.stop()
	if err := s.Commit(); err != nil {
		return err
	}
	a.summarize(out, convertWhat(names), total, "resources", w.n.Load(), time.Since(start))
	return nil
}
