package cmd

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/fhirbulk/fhirbulk/pkg/fhirformat"
	"github.com/fhirbulk/fhirbulk/pkg/source"
)

func (a *app) convertCmd() *cobra.Command {
	var out outputFlags
	var in readFlags
	var to string
	c := &cobra.Command{
		Use:   "convert --to fhir|aidbox [FILE...]",
		Short: "Convert ndjson resources between FHIR and Aidbox format",
		Long: `Convert ndjson resources between FHIR format and Aidbox format (references as
{resourceType, id}, choice elements as value: {Quantity: ...}), as a filter:
FILEs (gzip detected; - or none for stdin) to stdout or --output. No database.`,
		Example: `  fhirbulk convert --to aidbox patients.ndjson.gz > patients.aidbox.ndjson
  fhirbulk dump Observation | fhirbulk convert --to fhir`,
	}
	out.register(c)
	in.register(c)
	c.Flags().StringVar(&to, "to", "", "the `FORMAT` to write: fhir or aidbox (required)")
	c.RunE = a.run(func(ctx context.Context, args []string) error {
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
		s, err := out.open(a)
		if err != nil {
			return err
		}
		defer s.Abort()
		for _, spec := range args {
			src, err := source.Open(ctx, spec, in.sourceOptions(a))
			if err != nil {
				return fmt.Errorf("convert %w", err)
			}
			_, err = fhirformat.Stream(ctx, src, s, dir, int(in.maxLine))
			src.Close()
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return fmt.Errorf("convert %s: %w", src.Name(), err)
			}
		}
		return s.Commit()
	})
	return c
}
