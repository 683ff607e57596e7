package serve

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Rights are what a caller may do: read (dump, dump-sql, status) and
// write (load, import).
type Rights uint8

// The rights.
const (
	Read Rights = 1 << iota
	Write
)

func (r Rights) String() string {
	var parts []string
	if r&Read != 0 {
		parts = append(parts, "read")
	}
	if r&Write != 0 {
		parts = append(parts, "write")
	}
	return strings.Join(parts, ",")
}

func parseRights(s string) (Rights, error) {
	var r Rights
	for _, p := range strings.Split(s, ",") {
		switch strings.TrimSpace(p) {
		case "read":
			r |= Read
		case "write":
			r |= Write
		default:
			return 0, fmt.Errorf("rights %q: read, write or read,write", s)
		}
	}
	return r, nil
}

// Caller is who made a request: the name of its token or user (what the
// access log shows; never the secret) and its rights.
type Caller struct {
	Name   string
	Rights Rights
	// SMART is set for a SMART Backend Services access token: it opens
	// the Bulk Data endpoints only, for the types its scope reads (all of
	// them when AllTypes).
	SMART    bool
	AllTypes bool
	Types    []string
	// kind is "token" or "user" for the server's own credentials, "" for
	// SMART clients and for no authentication.
	kind string
}

// owner is who a job belongs to: a token's, a user's or a SMART client's
// name, each kind apart (a token named as a client is not it).
func (c Caller) owner() string {
	switch {
	case c.SMART:
		return "smart/" + c.Name
	case c.kind != "":
		return c.kind + "/" + c.Name
	}
	return c.Name
}

// mayRead reports whether the caller may export resources of type t.
func (c Caller) mayRead(t string) bool {
	return !c.SMART || c.AllTypes || slices.Contains(c.Types, t)
}

// Auth checks a request's credentials. The zero value takes nobody.
type Auth struct {
	tokens []token
	users  map[string]user
	// decoy is compared with the password of an unknown user, so that an
	// unknown user takes as long to refuse as a wrong password.
	decoy []byte
	// bcrypts bounds the bcrypt comparisons under way (each costs some
	// 50 ms of a core): beyond it a request is refused as busy, so that
	// nobody can keep the cores busy with wrong passwords.
	bcrypts chan struct{}
	// good caches the basic credentials that passed, by their SHA-256,
	// for a minute: a script's requests cost one bcrypt, not one each.
	mu   sync.Mutex
	good map[[32]byte]goodEntry
}

type goodEntry struct {
	caller Caller
	until  time.Time
}

type token struct {
	name   string
	hash   [32]byte // SHA-256 of the token: compared in constant time, whatever its length
	rights Rights
}

type user struct {
	hash   []byte // bcrypt
	rights Rights
}

// minToken is the least length of a bearer token: anything shorter can be
// guessed.
const minToken = 16

// maxAuthFile bounds a token or password file.
const maxAuthFile = 1 << 20

// Enabled reports whether any credentials are configured.
func (a *Auth) Enabled() bool { return len(a.tokens) > 0 || len(a.users) > 0 }

// Basic reports whether users log in with basic auth.
func (a *Auth) Basic() bool { return len(a.users) > 0 }

// LoadTokens reads a token file: one token per line, as
//
//	NAME RIGHTS TOKEN
//
// where RIGHTS is read, write or read,write; blank lines and lines
// starting with # are skipped. The file must be its owner's only (mode 0600
// or stricter): anyone who can read it can act as any of its tokens.
func (a *Auth) LoadTokens(path string) error {
	data, err := readSecretFile(path)
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	return eachLine(data, func(n int, fields []string) error {
		if len(fields) != 3 {
			return fmt.Errorf("%s line %d: want NAME RIGHTS TOKEN", path, n)
		}
		rights, err := parseRights(fields[1])
		if err != nil {
			return fmt.Errorf("%s line %d: %v", path, n, err)
		}
		if len(fields[2]) < minToken {
			return fmt.Errorf("%s line %d: the token of %q is shorter than %d characters", path, n, fields[0], minToken)
		}
		if seen[fields[0]] {
			return fmt.Errorf("%s line %d: the name %q is there twice", path, n, fields[0])
		}
		seen[fields[0]] = true
		a.tokens = append(a.tokens, token{name: fields[0], hash: sha256.Sum256([]byte(fields[2])), rights: rights})
		return nil
	})
}

// LoadUsers reads an htpasswd file of bcrypt hashes (htpasswd -B): one
// USER:HASH per line, and fhirbulk's optional third field :RIGHTS (read,
// write; default read,write). Other hash kinds (MD5, SHA-1, crypt) are
// refused: they are too quick to guess.
func (a *Auth) LoadUsers(path string) error {
	data, err := readSecretFile(path)
	if err != nil {
		return err
	}
	if a.users == nil {
		a.users = map[string]user{}
	}
	a.bcrypts = make(chan struct{}, max(runtime.GOMAXPROCS(0), 1))
	a.good = map[[32]byte]goodEntry{}
	if a.decoy, err = bcrypt.GenerateFromPassword([]byte("fhirbulk decoy password"), bcrypt.DefaultCost); err != nil {
		return err
	}
	return eachLine(data, func(n int, fields []string) error {
		parts := strings.Split(strings.Join(fields, " "), ":")
		if len(parts) < 2 || len(parts) > 3 || parts[0] == "" {
			return fmt.Errorf("%s line %d: want USER:BCRYPT-HASH[:RIGHTS]", path, n)
		}
		if _, err := bcrypt.Cost([]byte(parts[1])); err != nil {
			return fmt.Errorf("%s line %d: the hash of %q is not bcrypt (htpasswd -B)", path, n, parts[0])
		}
		rights := Read | Write
		if len(parts) == 3 {
			if rights, err = parseRights(parts[2]); err != nil {
				return fmt.Errorf("%s line %d: %v", path, n, err)
			}
		}
		if _, dup := a.users[parts[0]]; dup {
			return fmt.Errorf("%s line %d: the user %q is there twice", path, n, parts[0])
		}
		a.users[parts[0]] = user{hash: []byte(parts[1]), rights: rights}
		return nil
	})
}

func readSecretFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s: readable by others (mode %04o): chmod 600 it", path, fi.Mode().Perm())
	}
	data, err := io.ReadAll(io.LimitReader(f, maxAuthFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxAuthFile {
		return nil, fmt.Errorf("%s: over %d MiB", path, maxAuthFile>>20)
	}
	return data, nil
}

func eachLine(data []byte, f func(n int, fields []string) error) error {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), maxAuthFile)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := f(n, strings.Fields(line)); err != nil {
			return err
		}
	}
	return sc.Err()
}

// errNoCredentials and errBadCredentials are why a request is refused;
// errAuthBusy says to come back (too many passwords being checked).
var (
	errNoCredentials  = errors.New("no credentials")
	errBadCredentials = errors.New("wrong credentials")
	errAuthBusy       = errors.New("too many passwords being checked")
)

// Check returns the caller a request's credentials name. Every token is
// compared, in constant time, whichever matches; a user's password costs a
// bcrypt comparison, whether the user exists or not.
func (a *Auth) Check(r *http.Request) (Caller, error) {
	h := r.Header.Get("Authorization")
	scheme, cred, _ := strings.Cut(h, " ")
	switch {
	case h == "":
		return Caller{}, errNoCredentials
	case strings.EqualFold(scheme, "Bearer") && len(a.tokens) > 0:
		sum := sha256.Sum256([]byte(strings.TrimSpace(cred)))
		var found Caller
		match := 0
		for _, t := range a.tokens {
			if subtle.ConstantTimeCompare(sum[:], t.hash[:]) == 1 {
				found, match = Caller{Name: t.name, Rights: t.rights, kind: "token"}, 1
			}
		}
		if match == 1 {
			return found, nil
		}
	case strings.EqualFold(scheme, "Basic") && len(a.users) > 0:
		name, password, ok := r.BasicAuth()
		if !ok {
			return Caller{}, errBadCredentials
		}
		key := sha256.Sum256([]byte(name + "\x00" + password))
		a.mu.Lock()
		g, cached := a.good[key]
		a.mu.Unlock()
		if cached && time.Now().Before(g.until) {
			return g.caller, nil
		}
		select {
		case a.bcrypts <- struct{}{}:
		default:
			return Caller{}, errAuthBusy
		}
		u, known := a.users[name]
		hash := u.hash
		if !known {
			hash = a.decoy
		}
		match := bcrypt.CompareHashAndPassword(hash, []byte(password)) == nil && known
		<-a.bcrypts
		if match {
			c := Caller{Name: name, Rights: u.rights, kind: "user"}
			a.mu.Lock()
			if len(a.good) > 1024 {
				clear(a.good)
			}
			a.good[key] = goodEntry{caller: c, until: time.Now().Add(time.Minute)}
			a.mu.Unlock()
			return c, nil
		}
	}
	return Caller{}, errBadCredentials
}
