package source

import (
	"net/url"
	"regexp"
	"strings"
)

// A spec is taken as a URL when, spaces around it aside, it starts with a
// scheme name (a letter, then letters, digits, '+', '-' or '.'; any case)
// and "://"; an "http:" or "https:" without the slashes is a malformed URL,
// not a path. Everything else is a path.

// cutScheme splits s at the colon that ends a leading scheme name and
// returns the scheme in lower case.
func cutScheme(s string) (scheme, rest string, ok bool) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		case i > 0 && c == ':':
			return strings.ToLower(s[:i]), s[i+1:], true
		default:
			return "", s, false
		}
	}
	return "", s, false
}

func isHTTPScheme(scheme string) bool { return scheme == "http" || scheme == "https" }

// IsURL reports whether spec names a source Open reads by URL, of a
// scheme schemeOpener knows: today "http://", "https://" or "s3://" in any case,
// spaces around it ignored (Open trims them too).
func IsURL(spec string) bool {
	return locate(spec).opener != nil
}

// URLScheme is the scheme of spec, in lower case, when spec is a URL of
// any scheme ("scheme://…", spaces around it ignored); else "" (a path,
// "-"). Open and sink.Open choose what opens spec by it.
func URLScheme(spec string) string {
	scheme, rest, ok := cutScheme(strings.TrimSpace(spec))
	if !ok || !strings.HasPrefix(rest, "//") {
		return ""
	}
	return scheme
}

// Redact returns spec fit to show when it is a URL of any scheme (see
// IsURL, but any scheme counts): trimmed of spaces, scheme in lower case, no
// user info (so no password), and a query string replaced by "?…" (a
// fragment by "#…"). It never fails: a URL that does not parse loses
// everything before its last '@' and from its first '?' or '#'. Anything
// else (a path, "-") comes back unchanged. Redact(Redact(s)) == Redact(s).
func Redact(spec string) string {
	s := strings.TrimSpace(spec)
	scheme, rest, ok := cutScheme(s)
	if !ok && strings.HasPrefix(s, "//") && strings.ContainsAny(s, "@?#") {
		return redactSchemeless(s)
	}
	if !ok || !strings.HasPrefix(rest, "//") && !isHTTPScheme(scheme) {
		return spec
	}
	var hidden string
	if i := strings.IndexAny(rest, "?#"); i >= 0 {
		hidden = rest[i:i+1] + "…"
		rest = rest[:i]
	}
	slashes := ""
	if after, ok := strings.CutPrefix(rest, "//"); ok {
		if u, err := url.Parse(scheme + "://" + after); err == nil && u.Opaque == "" {
			return scheme + "://" + u.Host + u.EscapedPath() + hidden
		}
		slashes, rest = "//", after
	}
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		rest = rest[at+1:]
	}
	return scheme + ":" + slashes + rest + hidden
}

// redactSchemeless redacts "//user:pass@host/x?sig=…", a URL without its
// scheme (a path would not have user info or a query): the user info and
// the query go, as in Redact.
func redactSchemeless(s string) string {
	rest, hidden := s[2:], ""
	if i := strings.IndexAny(rest, "?#"); i >= 0 {
		hidden = rest[i:i+1] + "…"
		rest = rest[:i]
	}
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		rest = rest[at+1:]
	}
	return "//" + rest + hidden
}

// urlInText finds what looks like a URL in free text: a scheme and "://",
// up to a space, a quote or an angle bracket (what delimits a URL in Go's
// error messages, JSON and prose).
var urlInText = regexp.MustCompile("(?i)[a-z][a-z0-9+.-]*://[^\\s\"'<>`]*")

// RedactText returns s with every URL in it passed through Redact, so that
// no user info, query string or fragment survives: a URL there is a scheme
// name (any scheme, any case) and "://", up to a space, a quote, a backquote
// or an angle bracket. Punctuation right after a URL (".,:;!)]}") stays as
// text, and text already redacted comes back unchanged. It is meant for
// messages of any origin (a server's, a library's, ours) as a last guard
// before they are printed.
func RedactText(s string) string {
	if !strings.Contains(s, "://") {
		return s
	}
	return urlInText.ReplaceAllStringFunc(s, func(m string) string {
		core := strings.TrimRight(m, ".,:;!)]}")
		return Redact(core) + m[len(core):]
	})
}
