package source

import (
	"strings"
	"testing"
)

// leaks reports which secret of the test inputs s shows.
func leaks(s string) string {
	for _, secret := range []string{"secret", "Signature", "PASSWORD", "SIG", "frag"} {
		if strings.Contains(s, secret) {
			return secret
		}
	}
	return ""
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"https://b.s3.amazonaws.com/x/y.ndjson.gz?X-Amz-Signature=abc&X-Amz-Date=1": "https://b.s3.amazonaws.com/x/y.ndjson.gz?…",
		"https://user:secret@host:8443/p":                                           "https://host:8443/p",
		"http://host/p":                                                             "http://host/p",
		"http://host/p?":                                                            "http://host/p?…",
		"https://host/a b?sig=1":                                                    "https://host/a%20b?…",
		"https://u:pw@host/%zz?sig=secret":                                          "https://host/%zz?…",
		"./local/file.ndjson":                                                       "./local/file.ndjson",
		" local file ?x":                                                            " local file ?x",
		"-":                                                                         "-",
		// No scheme: still no user info, query or fragment.
		"//user:PASSWORD@host/x?sig=SIG": "//host/x?…",
		" //host/x#frag":                 "//host/x#…",
		"//u:PASS/WORD@host/x":           "//host/x",
		"//server/share/file.ndjson":     "//server/share/file.ndjson",
		// Any case, spaces around, any scheme.
		" https://u:PASSWORD@host/x?X-Amz-Signature=SIG": "https://host/x?…",
		"HTTPS://u:PASSWORD@Host/x?sig=SIG \n":           "https://Host/x?…",
		"s3://bucket/key?X-Amz-Signature=SIG":            "s3://bucket/key?…",
		"gs://b/o?X-Goog-Signature=SIG":                  "gs://b/o?…",
		"Ftp://u:PASSWORD@host/f":                        "ftp://host/f",
		// Fragments, with or without a query.
		"https://host/x#frag":         "https://host/x#…",
		"https://host/x?sig=SIG#frag": "https://host/x?…",
		"https://host/%zz#frag":       "https://host/%zz#…",
		// Unparseable: a password with '/' or '@' in it, a control character, a bad port.
		"https://u:PASS/WORD@host/x?sig=SIG":     "https://host/x?…",
		"https://u:PASS@WORD@host/x":             "https://host/x",
		"https://u:PASSWORD@ho\x1bst/x?sig=SIG":  "https://ho\x1bst/x?…",
		"https://u:PASSWORD@host:port/x?sig=SIG": "https://host:port/x?…",
		// An http(s) URL without its slashes is still one.
		"https:u:PASSWORD@host/x?sig=SIG": "https:host/x?…",
		"HTTP:host?sig=SIG":               "http:host?…",
		// Already redacted: unchanged.
		"https://host/x?…": "https://host/x?…",
	} {
		got := Redact(in)
		if got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
		if s := leaks(got); s != "" {
			t.Errorf("Redact(%q) leaks %s: %q", in, s, got)
		}
		if again := Redact(got); again != got {
			t.Errorf("Redact(Redact(%q)) = %q, not %q", in, again, got)
		}
	}
}

func TestRedactText(t *testing.T) {
	for in, want := range map[string]string{
		"no URL here: line 2": "no URL here: line 2",
		`Get "https://u:PASSWORD@h/x?X-Amz-Signature=SIG": EOF`:   `Get "https://h/x?…": EOF`,
		"load HTTPS://h/x?X-Amz-Signature=SIG: HTTP 404":          "load https://h/x?…: HTTP 404",
		"load https://h/x?…: HTTP 404; before it: https://h/y?….": "load https://h/x?…: HTTP 404; before it: https://h/y?….",
		"two: s3://b/k?SIG, gs://u:PASSWORD@b/o#frag)":            "two: s3://b/k?…, gs://b/o#…)",
		"dsn=postgres://app:PASSWORD@db:5432/x?sslmode=disable":   "dsn=postgres://db:5432/x?…",
		"(see https://example.org/a/b).":                          "(see https://example.org/a/b).",
		"<https://h/x?sig=SIG>":                                   "<https://h/x?…>",
		"a://":                                                    "a://",
	} {
		got := RedactText(in)
		if got != want {
			t.Errorf("RedactText(%q)\n = %q\nwant %q", in, got, want)
		}
		if s := leaks(got); s != "" {
			t.Errorf("RedactText(%q) leaks %s: %q", in, s, got)
		}
		if again := RedactText(got); again != got {
			t.Errorf("RedactText is not idempotent on %q: %q", got, again)
		}
	}
}

func TestIsURL(t *testing.T) {
	for spec, want := range map[string]bool{
		"http://h/x": true, "https://h/x": true, "HTTPS://h/x": true, "HtTp://h/x": true, " https://h/x ": true,
		"s3://b/k": true, "gs://b/k": true, "file:///x": false, "https:h/x": false, "./https://h": false, "file.ndjson": false, "-": false, "": false,
	} {
		if got := IsURL(spec); got != want {
			t.Errorf("IsURL(%q) = %v", spec, got)
		}
	}
}
