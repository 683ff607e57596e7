package cmd

import "testing"

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"1048576": 1 << 20, "256MiB": 256 << 20, "256 MiB": 256 << 20, "64M": 64 << 20, "1GiB": 1 << 30,
		"1.5GiB": 3 << 29, "500MB": 500e6, "500kB": 500e3, "2KiB": 2048, "7B": 7, "1TiB": 1 << 40,
	} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "lots", "-1", "1XB", "1 GiBs", "9999999999999TiB", "MiB"} {
		if got, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q) = %d, want an error", bad, got)
		}
	}
}
